"""Every built-in layer against its torch.nn.functional counterpart, at edge values.

One helper, ``check_layer``, in the style of tinygrad's ``helper_test_op``:
the generated forward, the generated fused backward, every chunked gradient
of an input, and ``Function.apply`` inside autograd are compared with autograd
of an independent torch function, in float64 (relative error <= 1e-10 of the
gradient's largest entry) and in float32 (the bound of ``symbp.verify.check``:
a small multiple of the float32 reference's own error plus a per-operation
rounding budget), on contiguous and on non-contiguous (transposed or
strided) arguments. The same function also checks ``symbp.verify.reference``, so
the evaluator that ``symbp check`` and the fuzzer trust is itself tested
against ``torch.nn.functional``.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from symbp.verify.check import EPS32, forward_ops, load_generated, tolerance
from symbp.verify.reference import axis_sizes, reference_forward, reference_gradients

F64, F32 = torch.float64, torch.float32
_MODULES = {}


def module_for(layer, options=None):
    key = (layer, tuple(sorted((options or {}).items())))
    if key not in _MODULES:
        _MODULES[key] = load_generated(layer, options)
    return _MODULES[key]


def noncontiguous(a: torch.Tensor) -> torch.Tensor:
    """The same values with other strides: a transposed copy for 2-D and more, every other element for 1-D."""
    if a.dim() >= 2:
        out = a.transpose(0, 1).contiguous().transpose(0, 1)
    else:
        out = torch.stack([a, torch.zeros_like(a)], -1)[..., 0] if a.dim() == 1 else a
    assert torch.equal(out, a)
    return out


def rel_err(got, want, floor):
    """max |got - want| / max |want| (denominator at least ``floor``); inf if not finite where want is."""
    got, want = got.detach().double(), want.detach().double()
    assert got.shape == want.shape, (got.shape, want.shape)
    if (torch.isfinite(want) & ~torch.isfinite(got)).any():
        return math.inf
    fin = torch.isfinite(want)
    if not fin.any():
        return 0.0
    scale = want[fin].abs().max().item()
    return (got - want)[fin].abs().max().item() / max(scale, floor, 1e-300)


def autograd_of(fn, args, dout, dtype):
    leaves = [a.detach().to(dtype).requires_grad_() if a.is_floating_point() else a for a in args]
    out = fn(*leaves)
    out.backward(dout.to(dtype))
    return out.detach(), [a.grad for a in leaves if a.is_floating_point()]


def check_layer(layer, torch_fn, *args, options=None, seed=0, chunked_too=True):
    """Forward and every backward of ``layer`` against ``torch_fn``, float64 and float32, both layouts.

    ``chunked_too=False`` leaves the chunked gradients out, for inputs where the
    chunked chain itself is not finite (autograd of the same chunked forward
    is not either), while the closed form is.
    """
    module = module_for(layer, options)
    spec = module.SPEC
    diff = [t for t in spec.arguments if t.differentiable]
    assert [a.is_floating_point() for a in args] == [t.differentiable for t in spec.arguments]
    want_out = torch_fn(*[a.to(F64) if a.is_floating_point() else a for a in args])
    g = torch.Generator().manual_seed(seed)
    dout = torch.randn(want_out.shape, dtype=F64, generator=g)

    # the reference evaluator agrees with torch.nn.functional (so it can be trusted elsewhere)
    assert rel_err(reference_forward(spec, list(args)), want_out, 1e-300) <= 1e-12
    _, want64 = autograd_of(torch_fn, args, dout, F64)
    ref, _, _ = reference_gradients(spec, list(args), dout)
    biggest = max(w.abs().max().item() for w in want64)
    for t, w in zip(diff, want64 if chunked_too else []):
        assert rel_err(ref["d" + t.name], w, 1e-2 * biggest) <= 1e-10, ("reference", t.name)

    kinds = 3 if chunked_too else 2  # fused, Function and (unless told not to) chunked
    ops = forward_ops(spec, {a.name: s for a, s in axis_sizes(spec, list(args)).items()})
    for layout in ("contiguous", "non-contiguous"):
        for dtype in (F64, F32):
            xs = [a.to(dtype) if a.is_floating_point() else a for a in args]
            if layout == "non-contiguous":
                xs = [noncontiguous(a) for a in xs]
            # the float64 truth on exactly the values the module sees, and torch's own float32 error
            out64, grads64 = autograd_of(torch_fn, xs, dout.to(dtype), F64)
            top = max(w.abs().max().item() for w in grads64)
            out, ctx = module.forward(*xs)
            assert out.dtype == dtype and out.shape == want_out.shape
            fused = module.backward(ctx, dout.to(dtype))
            chunked = module.backward_chunked(ctx, dout.to(dtype))
            leaves = [a.detach().requires_grad_() if a.is_floating_point() else a for a in xs]
            module.Function.apply(*leaves).backward(dout.to(dtype))
            applied = [a.grad for a in leaves if a.is_floating_point()]
            where = f"{layer} {layout} {dtype}"
            if dtype == F64:
                assert rel_err(out, out64, 1e-300) <= 1e-12, (where, "forward")
                for t, w, a, b in zip(diff, grads64, fused, applied):
                    versions = (("fused", a), ("Function", b), ("chunked", chunked["d" + t.name]))
                    for label, got in versions[:kinds]:
                        assert got.dtype == F64, (where, label, t.name)
                        err = rel_err(got, w, 1e-2 * top)
                        assert err <= 1e-10, (where, label, t.name, err)
            else:
                out32, grads32 = autograd_of(torch_fn, xs, dout.to(dtype), F32)
                # the spec's own chunked forward in float32 (the reference evaluator) can be less lucky
                # than torch's fused kernels (a constant column: x - mean is rounding noise times
                # 1/sqrt(eps)); float32's error on this input is the larger of the two
                spec32, _, _ = reference_gradients(spec, xs, dout.to(dtype), dtype=F32)
                grads32 = [w32 if (w32.double() - w).abs().max() >= (r.double() - w).abs().max() else r
                           for w32, r, w in zip(grads32, [spec32["d" + t.name] for t in diff], grads64)]
                e_fwd = (out32.double() - out64).abs().max().item()
                tol_fwd = 8 * e_fwd + ops * EPS32 * out64.abs().max().item()
                assert (out.double() - out64).abs().max().item() <= tol_fwd, (where, "forward")
                for t, w, w32, a, b in zip(diff, grads64, grads32, fused, applied):
                    tol = tolerance(w, w32, top, ops)
                    versions = (("fused", a), ("Function", b), ("chunked", chunked["d" + t.name]))
                    for label, got in versions[:kinds]:
                        assert got.dtype == F32, (where, label, t.name)
                        assert torch.isfinite(got).all() or not torch.isfinite(w).all(), (where, label)
                        err = (got.double() - w).abs().max().item()
                        assert err <= tol, (where, label, t.name, err, tol)


# --- the torch.nn.functional counterparts -------------------------------------------------

def bn_bessel(x, gain, bias, eps=1e-5):
    """BatchNorm with the Bessel-corrected variance, from F.batch_norm's biased one.

    (x - m) / sqrt(v * n/(n-1) + eps) = sqrt((n-1)/n) * (x - m) / sqrt(v + eps*(n-1)/n).
    """
    n = x.shape[0]
    r = (n - 1) / n
    return F.batch_norm(x, None, None, gain.reshape(-1) * math.sqrt(r), bias.reshape(-1), training=True,
                        eps=eps * r)


def bn_biased(x, gain, bias, eps=1e-5):
    return F.batch_norm(x, None, None, gain.reshape(-1), bias.reshape(-1), training=True, eps=eps)


def bn_biased_by_hand(x, gain, bias, eps=1e-5):
    """For n = 1, where F.batch_norm refuses to run in training mode."""
    mean = x.mean(0, keepdim=True)
    var = ((x - mean) ** 2).mean(0, keepdim=True)
    return gain * (x - mean) / torch.sqrt(var + eps) + bias


def layer_norm(x, gain, bias, eps=1e-5):
    return F.layer_norm(x, (x.shape[-1],), gain, bias, eps)


def rms_norm(x, gain, eps=1e-5):
    return F.rms_norm(x, (x.shape[-1],), gain, eps)


def linear(x, W, b):
    return F.linear(x, W.t(), b)


def embedding(C, X):
    return F.embedding(X, C)


def softmax(x):
    return F.softmax(x, dim=1)


def randn(*shape, seed=0):
    return torch.randn(*shape, dtype=F64, generator=torch.Generator().manual_seed(seed))


def const_column(n, d, col=1, value=0.7, seed=0):
    x = randn(n, d, seed=seed)
    x[:, col] = value
    return x


# --- one line per layer and edge ------------------------------------------------------------

@pytest.mark.parametrize("x, gain", [
    (randn(8, 5), randn(1, 5, seed=1)),
    (const_column(8, 5), randn(1, 5, seed=1)),  # a constant feature: zero variance
    (randn(8, 5), torch.zeros(1, 5, dtype=F64)),  # zero gain
    (randn(2, 1), randn(1, 1, seed=1)),  # the smallest Bessel batch, one feature
    (randn(7, 3) * 1e3 + 5e3, randn(1, 3, seed=1)),  # large offset and scale
], ids=["random", "constant-column", "zero-gain", "n2-d1", "large"])
def test_batchnorm_bessel(x, gain):
    check_layer("batchnorm", bn_bessel, x, gain, randn(1, x.shape[1], seed=2))


@pytest.mark.parametrize("x, gain", [
    (randn(8, 5), randn(1, 5, seed=1)),
    (const_column(8, 5), randn(1, 5, seed=1)),
    (randn(8, 5), torch.zeros(1, 5, dtype=F64)),
    (randn(2, 1), randn(1, 1, seed=1)),
], ids=["random", "constant-column", "zero-gain", "n2-d1"])
def test_batchnorm_biased(x, gain):
    check_layer("batchnorm", bn_biased, x, gain, randn(1, x.shape[1], seed=2), options={"variance": "biased"})


def test_batchnorm_biased_single_example():
    """n = 1: every example is its own mean, the output is the bias, the input gradient is zero."""
    check_layer("batchnorm", bn_biased_by_hand, randn(1, 4), randn(1, 4, seed=1), randn(1, 4, seed=2),
                options={"variance": "biased"})


TIES = torch.tensor([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0], [-1.0, 5.0, 0.0, 5.0]], dtype=F64)


@pytest.mark.parametrize("logits, targets", [
    (randn(6, 5), torch.tensor([0, 4, 2, 2, 1, 3])),
    (TIES, torch.tensor([1, 0, 3])),  # exact ties at the row maximum
    (randn(1, 5), torch.tensor([2])),  # a batch of one
    (randn(4, 1), torch.tensor([0, 0, 0, 0])),  # one class: the loss is 0
], ids=["random", "ties", "n1", "c1"])
def test_cross_entropy(logits, targets):
    check_layer("cross_entropy", F.cross_entropy, logits, targets)


def test_cross_entropy_large_logits():
    """Logits of size 1e4: probabilities are exactly 0 and 1 in float64.

    The targets are each row's maximum, so the seeds' ``log(probs)`` stays
    finite; the chunked chain divides 0 by an underflowed probability (as
    autograd of that forward does), so only the closed form is compared.
    """
    logits = randn(6, 5) * 1e4
    check_layer("cross_entropy", F.cross_entropy, logits, logits.argmax(1), chunked_too=False)


@pytest.mark.parametrize("x", [randn(6, 5), TIES, randn(6, 5) * 1e4, randn(3, 1)],
                         ids=["random", "ties", "large-1e4", "c1"])
def test_softmax(x):
    check_layer("softmax", softmax, x)


@pytest.mark.parametrize("x, gain", [
    (randn(6, 5), randn(5, seed=1)),
    (const_column(5, 6).t().contiguous(), randn(5, seed=1)),  # a constant row: zero variance
    (randn(6, 5), torch.zeros(5, dtype=F64)),
    (randn(4, 1), randn(1, seed=1)),  # one feature
], ids=["random", "constant-row", "zero-gain", "d1"])
def test_layernorm(x, gain):
    check_layer("layernorm", layer_norm, x, gain, randn(x.shape[1], seed=2))


@pytest.mark.parametrize("x, gain", [
    (randn(6, 5), randn(5, seed=1)),
    (torch.zeros(3, 5, dtype=F64), randn(5, seed=1)),  # all-zero rows: rms is sqrt(eps)
    (randn(6, 5), torch.zeros(5, dtype=F64)),
    (randn(4, 1), randn(1, seed=1)),
], ids=["random", "zero-rows", "zero-gain", "d1"])
def test_rmsnorm(x, gain):
    check_layer("rmsnorm", rms_norm, x, gain)


@pytest.mark.parametrize("pred, target", [
    (randn(6, 5), randn(6, 5, seed=1)),
    (randn(6, 5), None),  # prediction equals target: zero loss, zero gradient
    (randn(1, 1), randn(1, 1, seed=1)),
], ids=["random", "equal", "n1-d1"])
def test_mse(pred, target):
    check_layer("mse", F.mse_loss, pred, pred.clone() if target is None else target)


SATURATED = torch.tensor([[40.0, -40.0, 0.0], [20.0, -0.0, 1e-8]], dtype=F64)


@pytest.mark.parametrize("x", [randn(6, 5), SATURATED], ids=["random", "saturated-40"])
def test_tanh(x):
    check_layer("tanh", torch.tanh, x)


@pytest.mark.parametrize("x, W, b", [
    (randn(6, 4), randn(4, 3, seed=1), randn(3, seed=2)),
    (randn(1, 1), randn(1, 1, seed=1), randn(1, seed=2)),  # every axis of size one
    (randn(5, 4), torch.zeros(4, 3, dtype=F64), randn(3, seed=2)),  # zero weights
], ids=["random", "all-ones", "zero-W"])
def test_linear(x, W, b):
    check_layer("linear", linear, x, W, b)


@pytest.mark.parametrize("C, X", [
    (randn(7, 3), torch.tensor([[0, 6, 6], [2, 2, 2], [1, 0, 6], [5, 4, 3]])),  # repeated indices
    (randn(1, 2), torch.zeros(3, 2, dtype=torch.long)),  # a vocabulary of one
], ids=["repeats", "v1"])
def test_embedding(C, X):
    check_layer("embedding", embedding, C, X)


def test_helper_catches_a_wrong_gradient(monkeypatch):
    """The helper can fail: a fused backward off by 1e-6 relative does not pass."""
    module = module_for("layernorm")
    good = module.backward
    monkeypatch.setattr(module, "backward",
                        lambda ctx, g, needs=None: tuple(x * (1 + 1e-6) for x in good(ctx, g, needs)))
    with pytest.raises(AssertionError):
        check_layer("layernorm", layer_norm, randn(6, 5), randn(5, seed=1), randn(5, seed=2))


def test_helper_catches_a_wrong_forward(monkeypatch):
    module = module_for("tanh")
    good = module.forward
    monkeypatch.setattr(module, "forward", lambda x, chunked=True: (lambda o, c: (o * (1 + 1e-9), c))(
        *good(x, chunked=chunked)))
    with pytest.raises(AssertionError):
        check_layer("tanh", torch.tanh, randn(6, 5))
