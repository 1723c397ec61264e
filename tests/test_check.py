"""`symbp check`'s comparison: independent of the generated module, and able to fail."""

import math

import pytest
import sympy as sp
import torch

from conftest import VARIANTS
from symbp.spec import Spec
from symbp.verify.check import compare, default_sizes, load_generated, random_arguments
from symbp.verify.reference import reference_gradients


def args_for(module, dtype, seed=0, batch=9):
    return random_arguments(module.SPEC, default_sizes(module.SPEC, batch), dtype,
                            torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.module)
def test_every_layer_passes(variant, dtype, generated_modules):
    module = generated_modules[variant.module]
    rows = compare(module, args_for(module, dtype))
    assert rows and all(r.approximate for r in rows), [r.line() for r in rows if not r.approximate]
    names = {r.name for r in rows}
    for t in module.SPEC.differentiable:
        assert f"d{t.name} (fused)" in names and f"d{t.name}" in names


def tampered(module, *, fused=None, chunked=None):
    """A copy of ``module`` whose backward passes go through the given edits."""
    import types

    m = types.ModuleType(module.__name__)
    m.__dict__.update(module.__dict__)
    if fused:
        m.backward = lambda ctx, g: tuple(fused(x) for x in module.backward(ctx, g))
    if chunked:
        m.backward_chunked = lambda ctx, g: {k: chunked(v)
                                             for k, v in module.backward_chunked(ctx, g).items()}
    return m


@pytest.mark.parametrize("layer", ["batchnorm", "cross_entropy", "layernorm"])
def test_float64_flags_a_relative_error_of_1e_9(layer, generated_modules):
    module = tampered(generated_modules[layer], fused=lambda x: x * (1 + 1e-9))
    rows = compare(module, args_for(module, torch.float64))
    assert not all(r.approximate for r in rows if r.name.endswith("(fused)"))


def test_float32_flags_a_relative_error_of_1e_4(generated_modules):
    module = tampered(generated_modules["batchnorm"], fused=lambda x: x * (1 + 1e-4))
    rows = compare(module, args_for(module, torch.float32))
    assert not any(r.approximate for r in rows if r.name.endswith("(fused)"))


def test_a_single_nan_fails(generated_modules):
    def one_nan(x):
        x = x.clone()
        x.view(-1)[0] = math.nan
        return x

    module = tampered(generated_modules["layernorm"], chunked=one_nan)
    rows = compare(module, args_for(module, torch.float64))
    chunk_rows = [r for r in rows if not r.name.endswith("(fused)")]
    assert chunk_rows and not any(r.approximate for r in chunk_rows)
    assert all("non-finite" in r.note for r in chunk_rows)


def test_a_consistently_wrong_module_is_caught(generated_modules):
    """Forward and both backwards scaled by 2 agree with each other, and with autograd through
    that forward, but not with the spec: the reference evaluates the spec, not the module."""
    from symbp.verify.check import autograd_reference

    good = generated_modules["tanh"]
    m = tampered(good, fused=lambda x: 2 * x, chunked=lambda x: 2 * x)
    m.forward = lambda x, chunked=True: (lambda out, ctx: (2 * out, ctx))(*good.forward(x, chunked=chunked))
    args = args_for(m, torch.float64)
    dout = torch.randn(args[0].shape, dtype=torch.float64)
    fooled, _ = autograd_reference(m, args, dout)  # autograd through the module's own forward ...
    (dx,) = m.backward(m.forward(*args)[1], dout)
    assert torch.allclose(fooled["dx"], dx, rtol=1e-12)  # ... is fooled
    rows = compare(m, args, dout)
    assert not any(r.approximate for r in rows)


def test_a_missing_chunked_gradient_fails(generated_modules):
    good = generated_modules["batchnorm"]
    m = tampered(good)
    m.backward_chunked = lambda ctx, g: {k: v for k, v in good.backward_chunked(ctx, g).items()
                                         if k != "dbnvar"}
    rows = compare(m, args_for(m, torch.float64))
    assert any(r.name == "dbnvar" and not r.approximate for r in rows)


def test_arguments_follow_roles_and_assumptions_not_names():
    s = Spec("roles", "a spec whose names suggest nothing")
    n, k = s.axes("n k")
    a = s.input("gain", (n, k))  # a name that used to mean 'near one'
    b = s.param("q", (1, k), positive=True)
    y = s.classes("y", (n,), k)
    s.output("out", a * b + y)
    args = random_arguments(s, {"n": 50}, torch.float64, torch.Generator().manual_seed(0))
    gain, q, labels = args
    assert gain.shape == (50, 7) and q.shape == (1, 7) and labels.shape == (50,)
    assert gain.min() < 0 < gain.max() and abs(gain.mean()) < 0.5  # standard normal, not 1 + 0.1 randn
    assert (q > 0).all()
    assert labels.dtype == torch.long and 0 <= int(labels.min()) and int(labels.max()) < 7


def test_default_sizes_are_distinct_and_batch_is_first_or_n():
    s = Spec("sizes", "axes without the usual letters")
    p, q, r = s.axes("p q r")
    assert default_sizes(s, 32) == {"p": 32, "q": 7, "r": 5}
    s2 = Spec("sizes2", "n is the batch wherever it is")
    s2.axes("k n")
    assert default_sizes(s2, 11)["n"] == 11


def test_reference_gradients_of_a_hand_checked_spec():
    """y = Σ_k x*w: dx = dy*w, dw = Σ_n dy*x (by hand), including a (k,)-dims parameter."""
    s = Spec("hand", "a contraction written by hand")
    n, k = s.axes("n k")
    x = s.input("x", (n, k))
    w = s.param("w", (k,))
    s.output("y", sp.Mul(x, w), dims=(n, k))
    xv = torch.randn(4, 3, dtype=torch.float64)
    wv = torch.randn(3, dtype=torch.float64)
    dy = torch.randn(4, 3, dtype=torch.float64)
    grads, _, values = reference_gradients(s, [xv, wv], dy)
    assert torch.allclose(values["y"], xv * wv, rtol=1e-15)
    assert torch.allclose(grads["dx"], dy * wv, rtol=1e-15)
    assert torch.allclose(grads["dw"], (dy * xv).sum(0), rtol=1e-15)


def test_load_generated_works_on_a_spec_file(tmp_path):
    (tmp_path / "sq.py").write_text(
        '"""Square."""\nfrom symbp.spec import Spec\n\n\ndef build():\n    s = Spec("sq", "square")\n'
        '    n, d = s.axes("n d")\n    x = s.input("x", (n, d))\n    s.output("y", x**2)\n    return s\n')
    module = load_generated(str(tmp_path / "sq.py"))
    rows = compare(module, args_for(module, torch.float64))
    assert all(r.approximate for r in rows)


def test_reference_elementwise_functions_and_max_ties():
    """The evaluator's node table against torch, and amax's even split of a tied maximum."""
    from symbp.spec import Max
    from symbp.verify.reference import Evaluator, Layout

    s = Spec("ev", "evaluator")
    n, d = s.axes("n d")
    x = s.input("x", (n, d))
    xv = torch.tensor([[-1.0, 0.0, 2.0, 2.0], [3.0, -4.0, 0.5, 3.0]], dtype=torch.float64, requires_grad=True)
    ev = Evaluator(s, Layout(s, {n: 2, d: 4}), {x: xv}, {}, torch.float64)
    table = [(sp.Max(0, x), torch.relu(xv)), (sp.Abs(x), xv.abs()), (sp.sign(x), xv.sign()),
             (sp.erf(x), torch.erf(xv)), (sp.sqrt(x**2 + 1), torch.sqrt(xv**2 + 1)),
             (sp.Piecewise((x**2, x > 0), (0, True)), torch.where(xv > 0, xv**2, 0.0)),
             (sp.exp(x) * sp.Rational(1, 3), xv.exp() / 3), (sp.tanh(x) ** -2, xv.tanh() ** -2)]
    for expr, want in table:
        assert torch.allclose(ev(expr), want, rtol=1e-15, atol=0, equal_nan=True), expr
    top = ev(Max(d, x))
    assert top.tolist() == [[2.0], [3.0]]
    top.sum().backward()
    assert xv.grad.tolist() == [[0.0, 0.0, 0.5, 0.5], [0.5, 0.0, 0.0, 0.5]]
