"""The activation, loss and attention layers against their torch.nn.functional counterparts.

One helper checks forward and fused backward (and ``Function.apply`` under
autograd) against autograd of an independent torch function, in float64
tightly and float32 loosely, at the inputs where layers break: kinks and
ties, saturation (|x| = 40 and beyond), zero rows, size-one axes and
non-contiguous inputs.
"""

import pytest
import torch
import torch.nn.functional as F

from conftest import rel_err
from symbp.codegen.render import Variant, render_variant
from symbp.verify.check import load_generated

f64 = torch.float64
MODULES = {}


def generated(layer, **options):
    key = (layer, tuple(sorted(options.items())))
    if key not in MODULES:
        MODULES[key] = load_generated(layer, options)
    return MODULES[key]


def check_layer(layer, torch_fn, args, options=None, data=(), dout=None, tol=None):
    """Forward, fused backward and Function.apply of ``layer`` equal ``torch_fn`` and its autograd.

    ``data`` lists argument positions that are not differentiated.
    """
    module = generated(layer, **(options or {}))
    dtype = next(a.dtype for a in args if a.is_floating_point())
    tol = tol or (1e-12 if dtype == f64 else 2e-5)
    diff = [i for i, a in enumerate(args) if a.is_floating_point() and i not in data]
    leaves = [a.detach().double().requires_grad_(i in diff) if a.is_floating_point() else a
              for i, a in enumerate(args)]
    want = torch_fn(*leaves)
    dout = torch.linspace(-1, 1, want.numel(), dtype=f64).reshape(want.shape) if dout is None else dout
    want_grads = torch.autograd.grad(want, [leaves[i] for i in diff], dout)
    out, ctx = module.forward(*args)
    assert out.dtype == dtype and out.shape == want.shape
    assert rel_err(out.double(), want.detach(), 1e-30) <= tol, ("forward", layer)
    # errors are relative to each gradient's largest entry, but never below the scale of the whole
    # backward pass (in float32, all of it): a gradient that is tiny everywhere (a saturated softmax)
    # is judged by the rounding of the terms it cancels, not by its own size
    scale = max([float(w.abs().max()) for w in want_grads if w.numel()] + [float(dout.abs().max())])
    floor = scale * (1e-4 if dtype == f64 else 1.0)
    got = [g for g in module.backward(ctx, dout.to(dtype)) if g is not None]
    assert len(got) == len(diff)
    for g, w in zip(got, want_grads):
        assert g.dtype == dtype and g.shape == w.shape
        assert torch.isfinite(g[torch.isfinite(w)]).all(), (layer, g, w)
        assert rel_err(g.double(), w, floor) <= tol, (layer, rel_err(g.double(), w, floor))
    leaves2 = [a.detach().clone().requires_grad_(i in diff) if a.is_floating_point() else a
               for i, a in enumerate(args)]
    grads2 = torch.autograd.grad(module.Function.apply(*leaves2), [leaves2[i] for i in diff], dout.to(dtype))
    for g, w in zip(grads2, want_grads):
        assert rel_err(g.double(), w, floor) <= tol, ("Function", layer)


EDGES = torch.tensor([[0.0, -0.0, 1.0, -1.0, 40.0, -40.0, 1e-7, -3.0],
                      [100.0, -100.0, 0.5, 2.0, -0.5, 1e4, -1e4, 0.0]])


@pytest.mark.parametrize("dtype", [torch.float32, f64])
@pytest.mark.parametrize("layer, fn", [
    ("relu", F.relu),
    ("sigmoid", torch.sigmoid),
    ("silu", F.silu),
    ("gelu", F.gelu),
    ("gelu_tanh", lambda x: F.gelu(x, approximate="tanh")),
])
def test_activations_at_kinks_and_saturation(layer, fn, dtype):
    x = EDGES.to(dtype)
    check_layer(layer, fn, [x])
    check_layer(layer, fn, [torch.randn(9, 5, dtype=dtype).T])  # non-contiguous
    check_layer(layer, fn, [torch.randn(1, 1, dtype=dtype)])  # size-one axes


@pytest.mark.parametrize("dtype", [torch.float32, f64])
def test_bce_with_logits_is_stable(dtype):
    z = EDGES.to(dtype)
    t = torch.rand(z.shape, generator=torch.Generator().manual_seed(0)).to(dtype)
    t[0, :4] = torch.tensor([0.0, 1.0, 0.0, 1.0])
    check_layer("bce_with_logits", lambda z, t: F.binary_cross_entropy_with_logits(z, t), [z, t], data=[1],
                dout=torch.tensor(1.0, dtype=f64))


@pytest.mark.parametrize("dtype", [torch.float32, f64])
def test_log_softmax_and_logsumexp_with_ties_and_large_logits(dtype):
    x = torch.tensor([[1.0, 3.0, 3.0, 0.0], [1e4, -1e4, 0.0, 1e4], [5.0, 5.0, 5.0, 5.0]], dtype=dtype)
    check_layer("log_softmax", lambda x: F.log_softmax(x, 1), [x])
    check_layer("logsumexp", lambda x: torch.logsumexp(x, 1, keepdim=True), [x])
    check_layer("log_softmax", lambda x: F.log_softmax(x, 1), [torch.randn(7, 3, dtype=dtype).T])
    check_layer("logsumexp", lambda x: torch.logsumexp(x, 1, keepdim=True), [torch.randn(2, 1, dtype=dtype)])


@pytest.mark.parametrize("delta", [1.0, 0.5])
def test_huber_at_the_boundary(delta):
    pred = torch.tensor([[0.0, 0.5, 1.0, -1.0, 3.0], [-0.5, 2.0, -2.0, 0.25, 40.0]], dtype=f64)
    target = torch.zeros_like(pred)
    module = generated("huber")
    out, ctx = module.forward(pred, target, delta)
    leaf = pred.clone().requires_grad_()
    want = F.huber_loss(leaf, target, delta=delta)
    (dwant,) = torch.autograd.grad(want, leaf)
    assert rel_err(out, want.detach()) <= 1e-12
    dpred, dtarget = module.backward(ctx, torch.tensor(1.0, dtype=f64))
    assert rel_err(dpred, dwant) <= 1e-12 and rel_err(dtarget, -dwant) <= 1e-12


def test_dropout_mask_is_data_and_scaling_matches_torch():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(6, 5, dtype=f64, generator=g)
    mask = (torch.rand(6, 5, generator=g) >= 0.3).to(f64)
    module = generated("dropout")
    out, ctx = module.forward(x, mask, 0.3)
    assert torch.allclose(out, x * mask / 0.7, rtol=1e-15, atol=0)
    (dx,) = module.backward(ctx, torch.ones_like(x))
    assert torch.equal(dx, mask / 0.7)
    leaf = x.clone().requires_grad_()
    (dleaf,) = torch.autograd.grad(module.Function.apply(leaf, mask, 0.3).sum(), leaf)
    assert torch.allclose(dleaf, mask / 0.7, rtol=1e-15, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, f64])
def test_l2_normalize_matches_F_normalize(dtype):
    x = torch.randn(5, 4, dtype=dtype, generator=torch.Generator().manual_seed(2)) * 3
    tol = 1e-10 if dtype == f64 else 1e-5
    check_layer("l2_normalize", lambda x: F.normalize(x, dim=1), [x], tol=tol)
    # at a zero row F.normalize clamps the norm to eps (slope 1/eps); symbp's layer adds eps under
    # the root (slope 1/sqrt(eps)), as its docstring says: compare with that formula written in torch
    x[1] = 0.0
    check_layer("l2_normalize", lambda x: x * ((x**2).sum(1, keepdim=True) + 1e-12).rsqrt(), [x], tol=tol)


def test_linear_over_a_sequence_axis():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(3, 5, 4, dtype=f64, generator=g)
    W = torch.randn(4, 6, dtype=f64, generator=g)
    b = torch.randn(6, dtype=f64, generator=g)
    check_layer("linear_seq", lambda x, W, b: F.linear(x, W.T, b), [x, W, b])
    body = backward_source("linear_seq")
    assert "x.reshape(-1, x.shape[-1]).T @ dy.reshape(-1, dy.shape[-1])" in body, body  # dW: one matmul


def causal_bias(t, s, dtype):
    return torch.full((t, s), float("-inf"), dtype=dtype).triu(1)


@pytest.mark.parametrize("dtype", [torch.float32, f64])
def test_attention_matches_scaled_dot_product_attention(dtype):
    g = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(2, 4, 8, dtype=dtype, generator=g) for _ in range(3))
    check_layer("attention", lambda q, k, v: F.scaled_dot_product_attention(q, k, v), [q, k, v])
    bias = causal_bias(4, 4, dtype)
    check_layer("attention", lambda q, k, v, bias: F.scaled_dot_product_attention(q, k, v, attn_mask=bias),
                [q, k, v, bias], options={"mask": "additive"}, data=[3])
    q1 = torch.randn(1, 1, 8, dtype=dtype, generator=g)  # one query, one key: probabilities are exactly 1
    check_layer("attention", lambda q, k, v: F.scaled_dot_product_attention(q, k, v), [q1, q1 * 2, q1 + 1])
    pad = torch.zeros(4, 4, dtype=dtype)
    pad[:, 3] = float("-inf")  # the last key is padding
    check_layer("attention", lambda q, k, v, bias: F.scaled_dot_product_attention(q, k, v, attn_mask=bias),
                [q * 10, k * 10, v, pad], options={"mask": "additive"}, data=[3])


def backward_source(layer) -> str:
    source = render_variant(Variant(layer, layer, {}), layer, cache=False)[f"{layer}.py"]
    return source[source.index("def backward("):source.index("def backward_chunked(")]


def test_attention_backward_is_the_four_matmul_form():
    body = backward_source("attention")
    assert body.count(" @ ") == 4, body  # dP = dy @ v.T, dq = dS @ k, dk = dS.T @ q, dv = P.T @ dy
    assert "einsum" not in body
