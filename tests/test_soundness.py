"""Gradients symbp emits are right at the inputs where naive rewriting goes wrong.

Each spec in ``tests/specs/`` is a layer a user might write; each is checked
against autograd through a forward written here in plain torch (sharing no
code with symbp), at the inputs that broke earlier rewritings: a zero weight
that a division would hit, saturated sigmoids, ties in a maximum, float64
runs that must stay float64.
"""

import re

import pytest
import sympy as sp
import torch
import torch.nn.functional as F

from conftest import REPO, rel_err
from symbp import derive
from symbp.codegen.render import Variant, render_variant
from symbp.verify.check import load_generated

SPECS = REPO / "tests" / "specs"
f64 = torch.float64


def gradients(path, args, dout, options=None):
    """Fused and chunked gradients of the spec file's generated module (rendered in memory)."""
    module = load_generated(str(SPECS / path), options)
    _, ctx = module.forward(*args)
    fused = dict(zip([t.name for t in module.SPEC.differentiable], module.backward(ctx, dout)))
    chunked = module.backward_chunked(ctx, dout)
    return fused, chunked


def reference(fn, args, differentiable, dout=None):
    """Autograd through ``fn`` (plain torch) for the arguments at ``differentiable`` positions."""
    leaves = [a.detach().clone().requires_grad_(i in differentiable) for i, a in enumerate(args)]
    out = fn(*leaves)
    dout = torch.ones_like(out) if dout is None else dout
    grads = torch.autograd.grad(out, [leaves[i] for i in differentiable], dout, allow_unused=True)
    return [torch.zeros_like(leaves[i]) if g is None else g for i, g in zip(differentiable, grads)], dout


def assert_close(got, want, rtol):
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert torch.isfinite(got[torch.isfinite(want)]).all(), (got, want)
    assert rel_err(got, want, 1e-30) <= rtol, (got, want)


def test_a_zero_weight_is_never_divided_by():
    x = torch.randn(5, 3, dtype=f64)
    w = torch.tensor([[0.0, 1.5, -2.0]], dtype=f64)
    want, dy = reference(lambda x, w: (x * w) + (x * w) ** 2, [x, w], [0, 1])
    fused, chunked = gradients("scaled_square.py", [x, w], torch.ones(5, 3, dtype=f64))
    assert_close(fused["x"], want[0], 1e-12)
    assert_close(fused["w"], want[1], 1e-12)
    dw = derive(str(SPECS / "scaled_square.py")).fused_gradients["dw"]
    assert not any(isinstance(p, sp.Pow) and p.exp.is_negative for p in sp.preorder_traversal(dw)), dw


@pytest.mark.parametrize("spec", ["swish_sig.py", "swish_all.py"])
@pytest.mark.parametrize("dtype", [torch.float32, f64])
def test_swish_is_finite_and_right_where_the_sigmoid_saturates(spec, dtype):
    x = torch.tensor([[40.0, -100.0, 0.5, 0.0], [-40.0, 100.0, -3.0, 1e-3]], dtype=dtype)
    beta = torch.tensor([[1.0, 1.0, 2.0, -1.5]], dtype=dtype)
    dout = torch.ones_like(x)
    want, _ = reference(lambda x, b: x * torch.sigmoid(b * x), [x.double(), beta.double()], [0, 1],
                        dout.double())
    fused, _ = gradients(spec, [x, beta], dout)
    tol = 1e-12 if dtype == f64 else 1e-5
    assert_close(fused["x"], want[0].to(dtype), tol)
    assert_close(fused["beta"], want[1].to(dtype), tol)
    forms = derive(str(SPECS / spec)).fused_gradients
    for g in forms.values():
        assert not g.has(sp.log), g  # no log of a saved sigmoid


def test_no_lambert_w_for_x_exp_x():
    x = torch.tensor([[-2.0, -1.0, 0.0, 1.5]], dtype=f64)
    want, _ = reference(lambda x: (x * torch.exp(x)) ** 2 + x * torch.exp(x), [x], [0])
    fused, _ = gradients("xexp.py", [x], torch.ones_like(x))
    assert_close(fused["x"], want[0], 1e-12)
    assert not derive(str(SPECS / "xexp.py")).fused_gradients["dx"].has(sp.LambertW)


def test_saved_abs_and_transcendental_sums_are_kept_not_solved():
    x = torch.tensor([[-1.5, 0.0, 0.7, 3.0]], dtype=f64)

    def fn(x):
        a, b = x.abs(), x + torch.tanh(x)
        return a * b + a**2

    want, _ = reference(fn, [x], [0])
    fused, chunked = gradients("abs_saved.py", [x], torch.ones_like(x))
    assert_close(fused["x"], want[0], 1e-12)
    assert_close(chunked["dx"], want[0], 1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, f64])
def test_bce_with_logits_is_p_minus_t_and_finite_at_saturation(dtype):
    z = torch.tensor([-40.0, -5.0, 0.0, 5.0, 40.0, 100.0], dtype=dtype)
    t = torch.tensor([0.0, 1.0, 0.3, 1.0, 0.0, 1.0], dtype=dtype)
    want, _ = reference(lambda z: F.binary_cross_entropy_with_logits(z, t.double()), [z.double()], [0])
    fused, _ = gradients("bce_logits.py", [z, t], torch.ones((), dtype=dtype))
    assert set(fused) == {"z"}  # targets are data: no gradient derived or returned
    assert_close(fused["z"], want[0].to(dtype), 1e-12 if dtype == f64 else 1e-6)
    d = derive(str(SPECS / "bce_logits.py"))
    n, p, t_, dloss = sp.symbols("n p t dloss")
    form = d.fused_gradients["dz"].subs({s: sp.Symbol(s.name) for s in d.fused_gradients["dz"].free_symbols})
    assert sp.simplify(form - dloss * (p - t_) / n) == 0, form


def test_log_softmax_by_logsumexp_settles_and_splits_ties():
    z = torch.tensor([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0], [-50.0, 10.0, 0.0, 10.0]], dtype=f64)
    dout = torch.randn(3, 4, dtype=f64, generator=torch.Generator().manual_seed(0))

    def fn(z):
        m = z.amax(1, keepdim=True)
        return z - (m + torch.log(torch.exp(z - m).sum(1, keepdim=True)))

    want, _ = reference(fn, [z], [0], dout)
    fused, chunked = gradients("log_softmax_lse.py", [z], dout)
    assert_close(fused["z"], want[0], 1e-12)
    assert_close(chunked["dz"], want[0], 1e-12)
    assert_close(want[0], torch.autograd.functional.vjp(lambda a: torch.log_softmax(a, 1), z, dout)[1], 1e-12)
    assert "argmax" not in str(derive(str(SPECS / "log_softmax_lse.py")).fused_gradients["dz"])


def test_max_splits_the_gradient_evenly_among_ties():
    x = torch.tensor([[1.0, 3.0, 3.0, 0.0], [5.0, 5.0, 5.0, 5.0], [0.0, -1.0, 2.0, 1.0]], dtype=f64)
    want, _ = reference(lambda x: x.amax(1, keepdim=True), [x], [0])
    fused, chunked = gradients("max_only.py", [x], torch.ones(3, 1, dtype=f64))
    assert torch.equal(want[0][0], torch.tensor([0.0, 0.5, 0.5, 0.0], dtype=f64))
    assert_close(fused["x"], want[0], 1e-15)
    assert_close(chunked["dx"], want[0], 1e-15)


@pytest.mark.parametrize("dtype", [torch.float32, f64])
def test_one_hot_data_never_drags_a_float64_run_into_float32(dtype):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(7, 5, dtype=dtype, generator=g) * 3
    y = torch.randint(0, 5, (7,), generator=g)
    want, _ = reference(lambda a: F.cross_entropy(a, y, label_smoothing=0.1), [logits.double()], [0])
    fused, chunked = gradients("smoothed_ce.py", [logits, y], torch.ones((), dtype=dtype))
    tol = 1e-12 if dtype == f64 else 1e-6
    assert_close(fused["logits"], want[0].to(dtype), tol)
    assert_close(chunked["dlogits"], want[0].to(dtype), tol)


def test_an_unused_parameter_gets_a_zero_gradient():
    x = torch.randn(4, 3, dtype=f64)
    w = torch.randn(1, 3, dtype=f64)
    want, _ = reference(lambda x, w: torch.tanh(x) + 0 * w.sum().detach(), [x, w], [0, 1])
    fused, _ = gradients("unused_param.py", [x, w], torch.ones(4, 3, dtype=f64))
    assert_close(fused["x"], want[0], 1e-12)
    assert torch.equal(fused["w"], torch.zeros_like(w))


def test_function_works_under_torch_func_and_refuses_double_backward(generated_modules):
    bn = generated_modules["batchnorm"]
    g = torch.Generator().manual_seed(2)
    x = torch.randn(6, 4, dtype=f64, generator=g)
    gain = 1 + 0.1 * torch.randn(1, 4, dtype=f64, generator=g)
    bias = torch.randn(1, 4, dtype=f64, generator=g)

    def seeds_forward(x, gain, bias):  # the seeds' BatchNorm with Bessel's correction
        mean = x.mean(0, keepdim=True)
        var = ((x - mean) ** 2).sum(0, keepdim=True) / (x.shape[0] - 1)
        return gain * (x - mean) / torch.sqrt(var + 1e-5) + bias

    w = torch.randn(6, 4, dtype=f64, generator=g)
    want = torch.func.grad(lambda a: (seeds_forward(a, gain, bias) * w).sum())(x)
    got = torch.func.grad(lambda a: (bn.Function.apply(a, gain, bias) * w).sum())(x)
    assert_close(got, want, 1e-12)
    batch = torch.randn(3, 6, 4, dtype=f64, generator=g)
    assert_close(torch.func.vmap(lambda a: bn.Function.apply(a, gain, bias))(batch),
                 torch.stack([seeds_forward(b, gain, bias) for b in batch]), 1e-12)
    leaf = x.clone().requires_grad_()
    (dx,) = torch.autograd.grad((bn.Function.apply(leaf, gain, bias) * w).sum(), leaf, create_graph=True)
    with pytest.raises(RuntimeError):
        dx.sum().backward()  # once_differentiable: an error, never silently wrong second derivatives


def test_function_computes_only_the_gradients_autograd_asks_for(generated_modules):
    lin = generated_modules["linear"]
    x = torch.randn(5, 3, dtype=f64, requires_grad=True)
    W = torch.randn(3, 2, dtype=f64)
    b = torch.randn(2, dtype=f64)
    (lin.Function.apply(x, W, b) ** 2).sum().backward()
    leaf = x.detach().requires_grad_()
    (F.linear(leaf, W.T, b) ** 2).sum().backward()
    assert_close(x.grad, leaf.grad, 1e-12)
    _, ctx = lin.forward(x.detach(), W, b)
    dx, dW, db = lin.backward(ctx, torch.ones(5, 2, dtype=f64), needs=(False, True, False))
    assert dx is None and db is None and dW is not None


@pytest.mark.parametrize("dtype", [torch.float32, f64])
def test_elementwise_functions_follow_torch_at_kinks_and_ties(dtype):
    x = torch.tensor([[0.0, 1.0, -1.0, 2.0, 0.0, -3.0], [0.5, 0.0, 30.0, -30.0, 1e-3, 4.0]], dtype=dtype)
    y = torch.tensor([[0.0, 1.0, 0.0, -2.0, 1.0, -3.0], [0.5, -1.0, 0.0, 3.0, 0.0, 4.0]], dtype=dtype)
    dout = torch.linspace(-1, 1, 12, dtype=dtype).reshape(2, 6)

    def fn(x, y):  # plain torch ops whose derivative conventions symbp promises to follow
        a = F.relu(x) + F.leaky_relu(y, 0.1) + torch.maximum(x, y) - F.relu(-x)
        b = torch.erf(x) + torch.sin(y) * torch.cos(x) + torch.sqrt(x**2 + 1) + torch.sign(x) * y.abs()
        c = F.softplus(x) + torch.sigmoid(y) + (x > 0).to(x.dtype) * y  # heaviside(x, 0) * y
        return a * b + c

    want, _ = reference(fn, [x.double(), y.double()], [0, 1], dout.double())
    fused, chunked = gradients("activations.py", [x, y], dout)
    tol = 1e-12 if dtype == f64 else 1e-5
    assert_close(fused["x"], want[0].to(dtype), tol)
    assert_close(fused["y"], want[1].to(dtype), tol)
    assert_close(chunked["dx"], want[0].to(dtype), tol)
    module = load_generated(str(SPECS / "activations.py"))
    out, _ = module.forward(x, y)
    assert_close(out, fn(x.double(), y.double()).to(dtype), tol)


def test_a_column_lookup_by_class_index_and_a_transposed_binding():
    """``Sum(c, Y*W)`` with ``W`` (d, c) is ``W[:, Y]``; a contraction laid out (d, n) is permuted,
    never reshaped (a reshape would scramble it)."""
    n, d, c, i = 6, 4, 5, 3
    Y = torch.tensor([0, 4, 4, 2, 0, 1])
    x, W = torch.randn(n, d, dtype=f64), torch.randn(d, c, dtype=f64)
    want, _ = reference(lambda x, W: ((W[:, Y].T * x * x).sum()), [x, W], [0, 1])
    fused, chunked = gradients("colpick.py", [x, Y, W], torch.tensor(1.0, dtype=f64))
    for got in (fused, {"x": chunked["dx"], "W": chunked["dW"]}):
        assert_close(got["x"], want[0], 1e-12)
        assert_close(got["W"], want[1], 1e-12)
    x, W, v = torch.randn(n, i, dtype=f64), torch.randn(i, d, dtype=f64), torch.randn(d, n, dtype=f64)
    want, _ = reference(lambda x, W, v: ((x @ W).T ** 2 * v).sum(), [x, W, v], [0, 1, 2])
    fused, chunked = gradients("perm.py", [x, W, v], torch.tensor(1.0, dtype=f64))
    for got in (fused, {"x": chunked["dx"], "W": chunked["dW"], "v": chunked["dv"]}):
        for k, w in zip("xWv", want):
            assert_close(got[k], w, 1e-12)


def test_a_one_hot_summed_over_part_of_its_index_axes_is_a_dense_contraction():
    n, t, v, e = 5, 3, 4, 2
    X = torch.randint(0, v, (n, t))
    a, w = torch.randn(n, t, e, dtype=f64), torch.randn(t, v, e, dtype=f64)

    def forward(a, w):
        z = torch.einsum("ntv,nte->tve", F.one_hot(X, v).to(f64), a)
        return (z * z * w).sum()

    want, _ = reference(forward, [a, w], [0, 1])
    fused, chunked = gradients("onehot_partial.py", [X, a, w], torch.tensor(1.0, dtype=f64))
    for got in (fused, {"a": chunked["da"], "w": chunked["dw"]}):
        assert_close(got["a"], want[0], 1e-12)
        assert_close(got["w"], want[1], 1e-12)


@pytest.mark.parametrize("sizes", [(4, 4, 4), (5, 3, 2)])
def test_a_temporary_with_axes_is_never_pulled_out_of_a_matmul_as_a_scalar(sizes):
    """``exp(m*z)`` becomes a CSE temporary; it multiplies inside the contraction, not outside
    (square sizes made the wrong form run and return wrong numbers)."""
    n, i, o = sizes
    x, z, m = (torch.randn(n, i, dtype=f64) for _ in range(3))
    W, V = torch.randn(i, o, dtype=f64), torch.randn(i, o, dtype=f64)
    dy = torch.randn(n, o, dtype=f64)
    want, _ = reference(lambda W, V: (torch.exp(m * z) * x) @ W + (m * z) @ V, [W, V], [0, 1], dy)
    fused, chunked = gradients("temp_in_matmul.py", [x, z, m, W, V], dy)
    for got in (fused, {"W": chunked["dW"], "V": chunked["dV"]}):
        assert_close(got["W"], want[0], 1e-12)
        assert_close(got["V"], want[1], 1e-12)


def test_scaled_terms_folded_into_add_and_addcmul_match_autograd():
    """Coefficients of sizes ride on ``alpha=``/``value=``; an option's never does (it may be a tensor)."""
    n, d = 6, 4
    x, w = torch.randn(n, d, dtype=f64), torch.randn(1, d, dtype=f64)
    x[0] = x[1]  # tied rows
    dy = torch.randn(n, d, dtype=f64)
    path = str(SPECS / "scaled_sums.py")
    source = render_variant(Variant("scaled_sums", path, {}), path)["scaled_sums.py"]
    assert "torch.add(" in source and "alpha=1/n" in source, source  # the path under test is taken
    assert not re.search(r"\b(alpha|value)=[^,)\n]*\bgamma\b", source), "an option is never alpha="
    for gamma, xin in ((0.75, x), (2.0, torch.randn(d, n, dtype=f64).T)):  # the second non-contiguous

        def forward(x, w, gamma=gamma):
            dev = x - x.mean(0, keepdim=True)
            return dev**2 * w / (n - 1) + gamma * x * x * w / d + 3 * x * w / (n * d)

        want, _ = reference(forward, [xin, w], [0, 1], dy)
        fused, chunked = gradients("scaled_sums.py", [xin, w], dy, {"gamma": gamma})
        for got in (fused, {"x": chunked["dx"], "w": chunked["dw"]}):
            assert_close(got["x"], want[0], 1e-12)
            assert_close(got["w"], want[1], 1e-12)


@pytest.mark.parametrize("dtype", [torch.int64, f64])
def test_scaled_terms_of_integer_data_are_never_truncated(dtype):
    """``torch.addcmul(k, j, k, value=3/n)`` on int64 data would truncate 3/n to 0: such sums stay plain."""
    n, d = 6, 3
    x = torch.randn(n, d, dtype=f64)
    k, j = torch.randint(-3, 4, (n, d)).to(dtype), torch.randint(-3, 4, (n, d)).to(dtype)

    def forward(x):
        z = k + k * k / 2
        return x * (k + 3 * k * j / n) + z * x * x

    dy = torch.randn(n, d, dtype=f64)
    want, _ = reference(forward, [x], [0], dy)
    module = load_generated(str(SPECS / "int_data.py"))
    out, ctx = module.forward(x, k, j)
    assert_close(out, forward(x), 1e-12)
    assert_close(module.backward(ctx, dy)[0], want[0], 1e-12)
    assert_close(module.backward_chunked(ctx, dy)["dx"], want[0], 1e-12)


def test_a_tensor_minus_a_one_hot_is_a_scatter_add_that_matches_autograd():
    n, t, c = 4, 3, 5
    x = torch.randn(c, t, n, dtype=f64).permute(2, 1, 0)  # non-contiguous
    Y = torch.randint(0, c, (n, t))
    Y[0, 0] = c - 1  # the last class and a repeated one
    Y[1] = 0

    def forward(x):
        return ((x.exp() - 2 * F.one_hot(Y, c).to(f64)) ** 2).sum()

    want, _ = reference(forward, [x], [0])
    path = str(SPECS / "minus_onehot.py")
    assert "scatter_add(" in render_variant(Variant("minus_onehot", path, {}), path)["minus_onehot.py"]
    module = load_generated(path)
    out, ctx = module.forward(x, Y)
    assert_close(out, forward(x), 1e-12)
    dy = torch.tensor(1.0, dtype=f64)
    assert_close(module.backward(ctx, dy)[0], want[0], 1e-12)
    assert_close(module.backward_chunked(ctx, dy)["dx"], want[0], 1e-12)


@pytest.mark.parametrize("slope", [0.01, 0.3])
def test_a_piecewise_of_scalars_keeps_float64(slope):
    """``torch.where(x > 0, 1, slope)`` alone is float32: 0.01 rounded, errors of 1e-10 in float64."""
    x = torch.randn(5, 4, dtype=f64)
    x[0, 0] = 0.0  # the kink
    dy = torch.randn(5, 4, dtype=f64)
    want, _ = reference(lambda x: F.leaky_relu(x, slope), [x], [0], dy)
    fused, chunked = gradients("leaky_option.py", [x], dy, {"slope": slope})
    assert_close(fused["x"], want[0], 1e-15)
    assert_close(chunked["dx"], want[0], 1e-15)


def test_an_input_the_output_ignores_gets_zeros_from_both_backwards():
    x, w = torch.randn(3, 2, dtype=f64), torch.randn(3, 2, dtype=f64)
    dy = torch.randn(3, 2, dtype=f64)
    want, _ = reference(lambda x, w: w * 2, [x, w], [0, 1], dy)  # allow_unused: dx is zeros
    fused, chunked = gradients("unused_input.py", [x, w], dy)
    for got in (fused, {"x": chunked["dx"], "w": chunked["dw"]}):
        assert_close(got["x"], torch.zeros_like(x), 0)
        assert_close(got["w"], want[1], 1e-15)


def test_log_of_a_sigmoid_stays_finite_where_the_sigmoid_underflows():
    x = torch.tensor([[-1000.0, -40.0, 0.0], [3.0, 40.0, 1000.0]], dtype=f64)
    dy = torch.randn(2, 3, dtype=f64)
    module = load_generated(str(SPECS / "log_sigmoid.py"))
    out, ctx = module.forward(x)
    assert_close(out, F.logsigmoid(x), 1e-15)
    want, _ = reference(F.logsigmoid, [x], [0], dy)
    fused, chunked = gradients("log_sigmoid.py", [x], dy)
    assert_close(fused["x"], want[0], 1e-15)
    assert_close(chunked["dx"], want[0], 1e-15)


def test_a_clamp_written_with_min_and_max_matches_hardtanh_and_check_can_verify_it(capsys):
    """``symbp check`` refused it: neither the reference nor the exact test read ``ITE`` conditions."""
    from symbp.cli import main

    x = torch.tensor([[-2.0, -1.0, -0.5, 0.0], [0.5, 1.0, 3.0, 1e-3]], dtype=f64)  # both kinks exactly
    dy = torch.randn(2, 4, dtype=f64)
    want, _ = reference(F.hardtanh, [x], [0], dy)
    fused, chunked = gradients("clamp.py", [x], dy)
    assert_close(fused["x"], want[0], 1e-15)
    assert_close(chunked["dx"], want[0], 1e-15)
    assert main(["check", str(SPECS / "clamp.py"), "--dtype", "float64"]) == 0
    assert "2 of 2 gradients match" in capsys.readouterr().out


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, f64])
def test_data_terms_compute_in_the_layers_dtype_for_any_data_dtype(dtype):
    """``x*(1 - k)`` as one ``addcmul`` onto ``x``, ``- k`` and ``j/3`` beside floats: right on
    int64, bool and float data, forward and both backwards, against autograd on plain torch."""
    n, d = 5, 4
    x = torch.randn(d, n, dtype=f64).T  # non-contiguous
    k, j = torch.randint(0, 2, (n, d)).to(dtype), torch.randint(-3, 4, (n, d)).to(dtype)
    x[0, 0] = 0.0  # a zero input and a zero data entry
    k[0, 1] = 0

    def forward(x):
        return x * (1 - k.to(f64)) + k.to(f64) * j.to(f64) + x * x * (1 + j.to(f64) / 3)

    dy = torch.randn(n, d, dtype=f64)
    want, _ = reference(forward, [x], [0], dy)
    path = str(SPECS / "product_terms.py")
    assert "torch.addcmul(" in render_variant(Variant("product_terms", path, {}), path)["product_terms.py"]
    module = load_generated(path)
    out, ctx = module.forward(k, x, j)
    assert_close(out, forward(x), 1e-12)
    assert_close(module.backward(ctx, dy)[0], want[0], 1e-12)
    assert_close(module.backward_chunked(ctx, dy)["dx"], want[0], 1e-12)


@pytest.mark.parametrize("dtype", [torch.int64, torch.float32, f64])
def test_arithmetic_on_data_alone_runs_in_the_layers_dtype(dtype):
    """``Σ_n(j)/3`` and ``exp(j*k/7)`` on int64 (or float32) data in a float64 layer: float64
    throughout, not torch's float32 default, forward and both backwards; and a backward that
    reads only data takes its dtype from the gradient, which may be a plain number."""
    n, d = 5, 3
    x = torch.randn(d, n, dtype=f64).T  # non-contiguous
    j, k = torch.randint(-3, 4, (n, d)), torch.randint(-3, 4, (n, d))
    j[0] = 0  # a zero row of data

    def forward(x):
        jd, kd = j.to(f64), k.to(f64)
        return x * jd.sum(0, keepdim=True) / 3 + x**2 * torch.exp(jd * kd / 7)

    dy = torch.randn(n, d, dtype=f64)
    want, _ = reference(forward, [x], [0], dy)
    module = load_generated(str(SPECS / "data_arith.py"))
    out, ctx = module.forward(x, j.to(dtype), k.to(dtype))
    assert_close(out, forward(x), 1e-12)
    assert_close(module.backward(ctx, dy)[0], want[0], 1e-12)
    assert_close(module.backward_chunked(ctx, dy)["dx"], want[0], 1e-12)

    loss = load_generated(str(SPECS / "data_loss.py"))
    _, ctx = loss.forward(x, j.to(dtype))
    want, _ = reference(lambda x: (x * j.to(f64) / 3).sum(), [x], [0])
    assert_close(loss.backward(ctx, torch.tensor(1.0, dtype=f64))[0], want[0], 1e-12)
    by_number = loss.backward(ctx, 1.0)[0]  # a plain number: the default dtype, and no error
    assert by_number.dtype == torch.get_default_dtype()
    torch.testing.assert_close(by_number, want[0].to(by_number.dtype))

    mean = load_generated(str(SPECS / "data_mean.py"))  # a whole statement on data: k.mean(0) refuses int64
    out, ctx = mean.forward(x, j.to(dtype))
    assert_close(out, x * j.to(f64).mean(0), 1e-12)
    assert_close(mean.backward(ctx, dy)[0], dy * j.to(f64).mean(0), 1e-12)


DATA_SPECS = ["dropout", "bce_with_logits"] + [str(SPECS / f"{name}.py") for name in (
    "int_data", "product_terms", "data_arith", "data_loss", "data_mean", "temp_in_matmul", "bce_logits")]


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.float32])
@pytest.mark.parametrize("layer", DATA_SPECS)
def test_every_layer_with_data_takes_bool_int_and_float32_data(layer, dtype):
    """0/1 data passed as int64, bool or float32 to a float64 layer (including data inside a matmul):
    forward, fused and chunked gradients equal the independent reference evaluator's on the same
    values in float64, with nothing computed in float32 or refused for its dtype."""
    from symbp.verify.check import random_arguments
    from symbp.verify.reference import reference_gradients

    module = load_generated(layer)
    spec = module.SPEC
    g = torch.Generator().manual_seed(3)
    args = random_arguments(spec, {a.name: 3 + i for i, a in enumerate(spec.axis_list)}, f64, g)
    roles = [t.role for t in spec.arguments]
    assert "data" in roles
    args = [torch.randint(0, 2, a.shape, generator=g).to(f64) if r == "data" else a
            for a, r in zip(args, roles)]
    args[roles.index("data")].view(-1)[0] = 0.0  # at least one zero entry
    out, ctx = module.forward(*[a.to(dtype) if r == "data" else a for a, r in zip(args, roles)])
    dout = torch.randn(out.shape, dtype=f64, generator=g)
    ref, _, values = reference_gradients(spec, args, dout)
    assert_close(out, values[spec.output_tensor.name], 1e-12)
    chunked = module.backward_chunked(ctx, dout)
    for t, got in zip(spec.differentiable, module.backward(ctx, dout)):
        assert_close(got, ref["d" + t.name], 1e-12)
        assert_close(chunked["d" + t.name], ref["d" + t.name], 1e-12)
