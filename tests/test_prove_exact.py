"""The exact randomised test beside the symbolic proof: accepts right closed forms, rejects wrong ones.

The right and wrong forms here are written by hand from the textbook
formulas (Bessel-corrected BatchNorm, softmax cross-entropy, a mean), not
taken from the engine, so the test checks ``exact_random_test`` itself.
"""

import pytest
import sympy as sp

import symbp
from symbp.engine.prove import exact_random_test, prove_exact
from symbp.engine.simplify import Inliner
from symbp.layers import builtin_names
from symbp.spec import Spec, Sum


@pytest.mark.parametrize("layer", builtin_names())
def test_every_builtin_closed_form_passes(layer):
    result = prove_exact(symbp.derive(layer))
    assert result
    for name, r in result.items():
        assert r["proved_symbolically"] and r["exact_random_ok"], (name, r)
        assert len(r["sizes_tested"]) == 3 and r["points"] == 6
        if len(r["sizes_tested"][0]) > 1:  # different axes get different sizes
            assert all(len(set(s.values())) > 1 for s in r["sizes_tested"])


def batchnorm_parts(variance="bessel"):
    d = symbp.derive("batchnorm", variance=variance)
    s = d.spec
    sym = {name: t.symbol for name, t in s.tensors.items()}
    n = s.axis_list[0]
    dy = s.adjoint("hpreact")
    chain = Inliner(d.chunked).full(d.chunked.gradient("hprebn"))
    return s, sym, n, dy, chain


def bn_closed_form(sym, n, dy, ratio):
    """The seeds' dhprebn with ``ratio`` where n/(n-1) belongs."""
    raw, g, inv = sym["bnraw"], sym["bngain"], sym["bnvar_inv"]
    return g * inv / n * (n * dy - Sum(n, dy) - ratio * raw * Sum(n, dy * raw))


def test_batchnorm_bessel_accepts_n_over_n_minus_1_and_rejects_n():
    s, sym, n, dy, chain = batchnorm_parts("bessel")
    right = bn_closed_form(sym, n, dy, n / (n - 1))
    assert exact_random_test(s, chain, right)["ok"]
    wrong = bn_closed_form(sym, n, dy, sp.Integer(1))  # n instead of n - 1 in the variance
    r = exact_random_test(s, chain, wrong)
    assert not r["ok"] and r["counterexample"]


def test_batchnorm_biased_accepts_its_own_form_and_rejects_bessels():
    s, sym, n, dy, chain = batchnorm_parts("biased")
    assert exact_random_test(s, chain, bn_closed_form(sym, n, dy, sp.Integer(1)))["ok"]
    assert not exact_random_test(s, chain, bn_closed_form(sym, n, dy, n / (n - 1)))["ok"]


def test_cross_entropy_softmax_minus_onehot():
    d = symbp.derive("cross_entropy")
    s = d.spec
    n = s.axis_list[0]
    probs, y, dloss = s.tensors["probs"].symbol, s.tensors["targets"].symbol, s.adjoint("loss")
    chain = Inliner(d.chunked).full(d.chunked.gradient("logits"))
    assert exact_random_test(s, chain, dloss * (probs - y) / n)["ok"]
    for wrong in (dloss * probs / n, dloss * (probs - y), dloss * (probs - y) / (n - 1)):
        assert not exact_random_test(s, chain, wrong)["ok"], wrong


def mean_spec():
    s = Spec("meanlayer", "a mean over the batch")
    n, d = s.axes("n d")
    x = s.input("x", (n, d))
    m = s.output("m", Sum(n, x) / n)
    return s, n, x, m


def test_a_form_right_only_for_one_batch_size_is_rejected():
    s, n, x, m = mean_spec()
    assert exact_random_test(s, m, Sum(n, x) / n)["ok"]
    r = exact_random_test(s, m, Sum(n, x) / 2)  # right at n = 2 only
    assert not r["ok"] and "sizes" in r["counterexample"]


def test_rational_parts_are_compared_exactly():
    """A relative difference of 1e-40 is below any float tolerance, but not equal."""
    s, n, x, m = mean_spec()
    r = exact_random_test(s, m, m * (1 + sp.Rational(1, 10**40)))
    assert not r["ok"] and "exact" in r["counterexample"]
    assert exact_random_test(s, m, m)["exact"]


def test_transcendental_parts_are_compared_to_1e_30():
    """exp(a)*exp(b) and exp(a + b) agree to 50 digits; a change in the 25th digit does not."""
    s = Spec("expl", "exponentials")
    n, d = s.axes("n d")
    x = s.input("x", (n, d))
    w = s.param("w", (1, d))
    e = s.output("e", sp.exp(x) * sp.exp(w))
    r = exact_random_test(s, e, sp.exp(x + w))
    assert r["ok"] and not r["exact"] and r["worst"] < 1e-40
    assert not exact_random_test(s, e, sp.exp(x + w) * (1 + sp.Rational(1, 10**25)))["ok"]


def test_ties_and_one_hot_are_evaluated_entry_by_entry():
    """A selection by class index equals the one-hot sum it stands for."""
    s = Spec("pick", "pick the target entry")
    n, c = s.axes("n c")
    z = s.input("z", (n, c))
    y = s.classes("y", (n,), c)
    picked = s.output("picked", Sum(c, y * z))
    assert exact_random_test(s, picked, Sum(c, y * z))["ok"]
    assert not exact_random_test(s, picked, Sum(c, z) / c)["ok"]
