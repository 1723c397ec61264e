"""The spec fuzzer, and one regression test per distinct failure it found.

Random spec files from the spec grammar (``symbp.verify.fuzz``) go through load ->
derive -> render -> run, and every fused, lean-context and chunked gradient
is compared in float64 with autograd of the independent reference evaluator
(finite wherever the reference is finite, relative error <= 1e-9). A
refusal with a one-line ``SpecError`` is allowed; a traceback, a hang, a
non-finite or a wrong number is not. ``benchmarks/fuzz_specs.py`` runs
thousands of examples; each test below the random one is a bug it found,
kept as a regression test now that the engine is fixed.
"""

import pytest
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from symbp.verify.check import compare, load_generated
from symbp.verify.fuzz import check_source, spec_source

HEAD = '''"""A regression spec."""

from sympy import Abs, Rational, exp, log, sqrt, tanh

from symbp.spec import Max, Spec, Sum

OPTIONS = {}


def build():
    s = Spec("fz", "regression")
'''


def source(*lines) -> str:
    return HEAD + "".join(f"    {line}\n" for line in lines) + "    return s\n"


def run(tmp_path, src, edge="none", seed=1):
    return check_source(src, tmp_path, seed=seed, edge=edge)


def assert_passes(tmp_path, src, edge="none"):
    out = run(tmp_path, src, edge)
    assert out.status == "pass", (edge, out)


def hypothesis_draw(data):
    return lambda kind, lo, hi: data.draw(st.integers(lo, hi))


# --- the fuzzer ---------------------------------------------------------------------------


@settings(max_examples=100, deadline=None, derandomize=True, database=None,
          phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
@given(data=st.data(), edge=st.sampled_from(["none", "zeros", "ties", "intdata"]), seed=st.integers(0, 2**16))
def test_random_specs_match_the_reference(tmp_path_factory, data, edge, seed):
    src = spec_source(hypothesis_draw(data))
    outcome = check_source(src, tmp_path_factory.mktemp("fz"), seed=seed, edge=edge)
    assert outcome.status in ("pass", "refused"), (outcome.stage, outcome.message, src)


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(data=st.data(), seed=st.integers(0, 2**16))
def test_random_specs_forward_matches_the_reference(tmp_path_factory, data, seed):
    """Where a random spec renders, its generated forward computes what the reference evaluator does."""
    from symbp.verify.check import random_arguments
    from symbp.verify.reference import reference_forward

    src = spec_source(hypothesis_draw(data))
    path = tmp_path_factory.mktemp("fz") / "fz.py"
    path.write_text(src)
    try:
        module = load_generated(str(path))
    except Exception:  # derive and render failures are test_random_specs_match_the_reference's
        return
    args = random_arguments(module.SPEC, {"n": 3, "d": 4, "c": 5}, torch.float64,
                            torch.Generator().manual_seed(seed))
    out, _ = module.forward(*args)
    want = reference_forward(module.SPEC, args)
    assert out.shape == want.shape
    assert torch.allclose(out, want, rtol=1e-12, atol=0, equal_nan=True), src


def test_the_generator_covers_the_grammar():
    """Across seeds the generator uses every construct it promises (so the fuzzer is not vacuous)."""
    import random

    from symbp.verify.fuzz import random_draw

    text = "\n".join(spec_source(random_draw(random.Random(i))) for i in range(1000))
    for construct in ("exp(", "log(1 + exp(", "tanh(", "Abs(", "**(-1)", "**Rational(-1, 2)", "sqrt(",
                      "Sum(n,", "Sum(d,", "Sum(c,", ")/n", "Max(", "s.save(", "alpha", "s.param(",
                      "(1, d)", "(d,)", "dims=()", "s.data("):
        assert construct in text, construct


def test_the_fuzz_check_can_fail(tmp_path, monkeypatch):
    """A spec whose generated backward is off by 1e-8 relative is reported, not passed."""
    import symbp.verify.check as chk

    src = source('n, d = s.axes("n d")', 'x0 = s.input("x0", (n, d))', 's.output("y", tanh(x0))')
    assert_passes(tmp_path, src)
    good_loader = chk.load_generated

    def tampered(*a, **k):
        mod = good_loader(*a, **k)
        good = mod.backward
        mod.backward = lambda ctx, g, **k: tuple(x * (1 + 1e-8) for x in good(ctx, g, **k))
        return mod

    monkeypatch.setattr(chk, "load_generated", tampered)
    out = run(tmp_path, src)
    assert out.status == "fail" and "fused dx0" in out.message, out


# --- regression tests: each a distinct failure the fuzzer found ------------------------------

def test_passes_an_elementwise_chain(tmp_path):
    src = source('n, d = s.axes("n d")', 'x0 = s.input("x0", (n, d))', 'w0 = s.param("w0", (1, d))',
                 'b0 = s.let("b0", log(1 + exp(x0 * w0)))', 'b1 = s.let("b1", (b0**2 + 1)**Rational(-1, 2))',
                 's.output("y", Sum(n, Sum(d, b1 * b0 + tanh(x0))) / n, dims=())', 's.save(x0, w0)')
    for edge in ("none", "zeros", "ties"):
        out = run(tmp_path, src, edge)
        assert out.status == "pass", (edge, out)


BROADCAST_IN_SUM = source('n, d = s.axes("n d")', 'x0 = s.input("x0", (n, d))', 'w0 = s.param("w0", (1, d))',
                          's.output("y", Sum(n, x0 + w0), dims=(1, d))')


def test_broadcast_term_inside_a_sum(tmp_path):
    assert_passes(tmp_path, BROADCAST_IN_SUM)


def test_check_is_not_fooled_by_broadcast_in_sum(tmp_path, capsys):
    """`symbp check` reports what a hand-written torch computation says, whatever the engine does."""
    from symbp.cli import main

    path = tmp_path / "fz.py"
    path.write_text(BROADCAST_IN_SUM)
    module = load_generated(str(path))
    x = torch.randn(5, 3, dtype=torch.float64)
    w = torch.randn(1, 3, dtype=torch.float64, requires_grad=True)
    (x + w).sum(0, keepdim=True).backward(torch.ones(1, 3, dtype=torch.float64))
    _, ctx = module.forward(x, w.detach())
    _, dw = module.backward(ctx, torch.ones(1, 3, dtype=torch.float64))
    engine_right = torch.allclose(dw, w.grad, rtol=1e-12, atol=0)
    assert (main(["check", str(path), "--dtype", "float64"]) == 0) == engine_right
    rows = compare(module, [x, w.detach()])
    assert all(r.approximate for r in rows) == engine_right


def test_identically_zero_gradient(tmp_path):
    src = source('n, c = s.axes("n c")', 'x0 = s.input("x0", (n, c))', 'w1 = s.param("w1", (1, c))',
                 'b1 = s.let("b1", x0, dims=(n, c))', 'b2 = s.let("b2", x0, dims=(n, c))',
                 's.output("y", 2*w1 + b1 - b2, dims=(n, c))', 's.save(b1)')
    assert_passes(tmp_path, src)


def test_input_that_cancels(tmp_path):
    src = source('n, d = s.axes("n d")', 'x0 = s.input("x0", (n, d))', 'x1 = s.input("x1", (n, d))',
                 'b0 = s.let("b0", x1**3 - (x0 - x0), dims=(n, d))', 's.output("y", tanh(b0))')
    out = run(tmp_path, src)
    assert out.status in ("pass", "refused"), out


@pytest.mark.parametrize("reduction", ["Sum", "Max"])
def test_power_of_a_reduction(tmp_path, reduction):
    src = source('n, d = s.axes("n d")', 'x0 = s.input("x0", (n, d))',
                 f'b0 = s.let("b0", {reduction}(d, x0)**2, dims=(n, 1))',
                 's.output("y", x0 * b0, dims=(n, d))')
    assert_passes(tmp_path, src)


def test_saved_abs(tmp_path):
    src = source('n, d = s.axes("n d")', 'x0 = s.input("x0", (n, d))', 'b0 = s.let("b0", Abs(x0))',
                 's.output("y", b0 * x0)', 's.save(b0)')
    out = run(tmp_path, src)
    assert out.status in ("pass", "refused"), out


def test_saved_product_with_log(tmp_path):
    src = source('n, d = s.axes("n d")', 'x0 = s.input("x0", (n, d))',
                 'b0 = s.let("b0", log(x0**2 + 1) * x0)', 's.output("y", b0 + x0)', 's.save(b0)')
    out = run(tmp_path, src)
    assert out.status in ("pass", "refused"), out


def test_saved_product_divides_by_zero(tmp_path):
    src = source('n, c = s.axes("n c")', 'x0 = s.input("x0", (n, c))', 'w0 = s.param("w0", (1, c))',
                 'w1 = s.param("w1", (1, c))', 'b0 = s.let("b0", w0 * w1)',
                 's.output("y", Sum(n, Sum(c, x0)) + Sum(c, b0), dims=())', 's.save(b0, w0)')
    assert_passes(tmp_path, src)  # random arguments: no zero, so this passes
    assert_passes(tmp_path, src, edge="zeros")  # a third of w0 is 0


def test_max_ties_split_evenly(tmp_path):
    src = source('n, d = s.axes("n d")', 'x0 = s.input("x0", (n, d))',
                 's.output("y", Max(d, x0), dims=(n, 1))')
    path = tmp_path / "fz.py"
    path.write_text(src)
    module = load_generated(str(path))
    x = torch.tensor([[1.0, 3.0, 3.0, 0.0]], dtype=torch.float64)
    _, ctx = module.forward(x)
    (dx,) = module.backward(ctx, torch.ones(1, 1, dtype=torch.float64))
    assert torch.equal(dx, torch.tensor([[0.0, 0.5, 0.5, 0.0]], dtype=torch.float64))


@pytest.mark.parametrize("use", ["Sum(d, w0) - x1", "Sum(d, w0) * x1"])
def test_flat_parameter_reduced_over_its_own_axis(tmp_path, use):
    src = source('n, d = s.axes("n d")', 'x1 = s.input("x1", (n, d))', 'w0 = s.param("w0", (d,))',
                 f'b0 = s.let("b0", {use}, dims=(n, d))', 's.output("y", Sum(n, Sum(d, b0)), dims=())')
    assert_passes(tmp_path, src)


def test_saved_product_of_a_difference_settles(tmp_path):
    src = source('n, d = s.axes("n d")', 'x0 = s.input("x0", (n, d))', 'x1 = s.input("x1", (n, d))',
                 'w1 = s.param("w1", (1, d))', 'b0 = s.let("b0", x0 * (w1 - x1))',
                 's.output("y", Sum(n, Sum(d, b0)), dims=())', 's.save(b0)')
    assert_passes(tmp_path, src)


def test_saved_x_exp_x(tmp_path):
    src = source('n, d = s.axes("n d")', 'x0 = s.input("x0", (n, d))', 'h = s.let("h", x0 * exp(x0))',
                 's.output("y", Sum(n, Sum(d, h**2)), dims=())', 's.save(h)')
    assert_passes(tmp_path, src)


def test_saved_binding_with_tanh_of_a_max_product(tmp_path):
    src = source('n, d = s.axes("n d")', 'x0 = s.input("x0", (n, d))',
                 'b0 = s.let("b0", Max(n, x0) * (x0 + x0))',
                 'b2 = s.let("b2", (b0 + x0 + tanh(b0)) * b0)', 's.output("y", b2)', 's.save(b2)')
    out = run(tmp_path, src)
    assert out.status in ("pass", "refused"), out


def test_a_reduced_factor_scaling_a_result_in_place_keeps_its_reduction(tmp_path):
    """``Sum(d, 2*x1)*(db0 - db0*tanh(u)**2)`` once printed as ``....mul_(2*x1).sum(1, ...)``:
    the reduction's parentheses were taken for a wrapper around the whole factor."""
    src = source('n, d = s.axes("n d")', 'x0 = s.input("x0", (n, d))', 'x1 = s.input("x1", (n, d))',
                 'b0 = s.let("b0", (Sum(d, (x1 + x1)) * tanh((x1 + x0))), dims=(n, d))',
                 'b1 = s.let("b1", log(1 + ((x0 - x1))**2), dims=(n, d))',
                 's.output("y", Sum(n, Sum(d, b0 + 2*b1))/n, dims=())')
    assert_passes(tmp_path, src)
