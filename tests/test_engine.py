"""The engine's results, checked symbolically against the seeds' hand-derived formulas."""

import pytest
import sympy as sp

import symbp
from symbp.spec import ArgmaxMask, Max, Spec, SpecError, Sum


def syms(d, *names):
    spec = d.spec
    out = []
    for nm in names:
        if nm.startswith("d") and nm[1:] in spec.tensors:
            out.append(spec.adjoint(nm[1:]))
        elif nm in spec.tensors:
            out.append(spec.tensors[nm].symbol)
        elif nm in spec.options:
            out.append(spec.options[nm].symbol)
        else:
            out.append(next(a for a in spec.axis_list if a.name == nm))
    return out


def same(a, b):
    """Exact SymPy equality, reductions treated as opaque atoms."""
    return sp.simplify(sp.expand(a - b)) == 0


@pytest.fixture(scope="module")
def bn():
    return symbp.derive("batchnorm")


@pytest.fixture(scope="module")
def ce():
    return symbp.derive("cross_entropy")


def test_batchnorm_chunked_matches_seeds(bn):
    g = bn.chunked_gradients
    (n, bngain, dhpreact, bndiff, dbnraw, bnvar, eps, dbnvar_inv, dbnvar, dbndiff2, bnvar_inv,
     dbndiff, dbnmeani, bnraw) = syms(
        bn, "n", "bngain", "dhpreact", "bndiff", "dbnraw", "bnvar", "eps", "dbnvar_inv", "dbnvar",
        "dbndiff2", "bnvar_inv", "dbndiff", "dbnmeani", "bnraw")
    assert same(g["dbnraw"], bngain * dhpreact)
    assert same(g["dbnvar_inv"], Sum(n, bndiff * dbnraw))
    # the seeds' -0.5*(bnvar + eps)**-1.5, written with the saved bnvar_inv = (bnvar + eps)**-0.5
    assert g["dbnvar"].has(bnvar_inv) and not g["dbnvar"].has(eps)
    assert same(g["dbnvar"].subs(bnvar_inv, (bnvar + eps) ** sp.Rational(-1, 2)),
                -sp.Rational(1, 2) * (bnvar + eps) ** sp.Rational(-3, 2) * dbnvar_inv)
    assert same(g["dbndiff2"], dbnvar / (n - 1))
    assert same(g["dbndiff"], bnvar_inv * dbnraw + 2 * bndiff * dbndiff2)
    assert same(g["dbnmeani"], -Sum(n, dbndiff))
    assert same(g["dhprebn"], dbndiff + dbnmeani / n)
    assert same(g["dbngain"], Sum(n, bnraw * dhpreact))
    assert same(g["dbnbias"], Sum(n, dhpreact))
    assert list(g) == ["dbnraw", "dbnvar_inv", "dbnvar", "dbndiff2", "dbndiff", "dbnmeani",
                       "dhprebn", "dbngain", "dbnbias"]


@pytest.mark.parametrize("variance", ["bessel", "biased"])
def test_batchnorm_fused_closed_form(variance):
    d = symbp.derive("batchnorm", variance=variance)
    n, bngain, bnvar_inv, bnraw, dy = syms(d, "n", "bngain", "bnvar_inv", "bnraw", "dhpreact")
    k = n / (n - 1) if variance == "bessel" else 1
    want = bngain * bnvar_inv / n * (n * dy - Sum(n, dy) - k * bnraw * Sum(n, dy * bnraw))
    f = d.fused_gradients
    assert same(f["dhprebn"], want)
    assert same(f["dbngain"], Sum(n, bnraw * dy))
    assert same(f["dbnbias"], Sum(n, dy))
    # written in saved quantities only
    free = {s.name for s in f["dhprebn"].free_symbols}
    assert free <= {"bngain", "bnvar_inv", "bnraw", "dhpreact", "n"}


def test_batchnorm_mean_path_uses_identity(bn):
    n, bndiff = syms(bn, "n", "bndiff")
    ids = {i.lhs: i.rhs for i in bn.fused.identities}
    assert ids.get(Sum(n, bndiff)) == 0


def test_cross_entropy_fused_and_max_shift_vanishes(ce):
    n, dloss, probs, targets = syms(ce, "n", "dloss", "probs", "targets")
    assert same(ce.fused_gradients["dlogits"], dloss * (probs - targets) / n)
    assert ("logits", "logit_maxes") in ce.vanishing_paths
    assert ce.fused.path_values[("logits", "logit_maxes")] == 0
    ids = {i.lhs: i.rhs for i in ce.fused.identities}
    assert ids.get(Sum(syms(ce, "c")[0], probs)) == 1


def test_cross_entropy_chunked_matches_seeds(ce):
    g = ce.chunked_gradients
    (n, c, dloss, targets, probs, dlogprobs, counts, dprobs, counts_sum, dcounts_sum_inv,
     counts_sum_inv, dcounts_sum, dcounts, dnorm_logits, logits, dlogit_maxes) = syms(
        ce, "n", "c", "dloss", "targets", "probs", "dlogprobs", "counts", "dprobs", "counts_sum",
        "dcounts_sum_inv", "counts_sum_inv", "dcounts_sum", "dcounts", "dnorm_logits", "logits",
        "dlogit_maxes")
    assert same(g["dlogprobs"], -dloss * targets / n)
    assert same(g["dprobs"], dlogprobs / probs)
    assert same(g["dcounts_sum_inv"], Sum(c, counts * dprobs))
    # the seeds' -counts_sum**-2 * dcounts_sum_inv, written with the saved counts_sum_inv
    assert same(g["dcounts_sum"].subs(counts_sum_inv, 1 / counts_sum), -counts_sum**-2 * dcounts_sum_inv)
    assert same(g["dcounts"], counts_sum_inv * dprobs + dcounts_sum)
    assert same(g["dnorm_logits"], counts * dcounts)
    assert same(g["dlogit_maxes"], -Sum(c, dnorm_logits))
    # the seeds: dlogits = dnorm_logits.clone(); dlogits += F.one_hot(logits.max(1).indices, c) * dlogit_maxes
    assert same(g["dlogits"], dnorm_logits + ArgmaxMask(c, logits) * dlogit_maxes)


def test_engine_has_no_layer_names():
    """Identities come from the bindings: the engine never names a layer or its tensors."""
    import ast
    from pathlib import Path

    words = set()
    for f in ("reverse.py", "simplify.py", "tidy.py", "trace.py", "algebra.py"):
        tree = ast.parse((Path(symbp.__file__).parent / "engine" / f).read_text())
        docs = {id(n.body[0].value) for n in ast.walk(tree)
                if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef)) and ast.get_docstring(n)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Name):
                words.add(node.id)
            elif isinstance(node, ast.Attribute):
                words.add(node.attr)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
                words.add(node.value)
    text = " ".join(words)
    for word in ("bnvar", "bndiff", "probs", "logit", "batchnorm", "cross_entropy", "hprebn"):
        assert word not in text


NEW_SPEC = '''"""Weighted cosine distance: the batch mean of 1 - cos(w*x, t), one weight per feature."""
import sympy as sp

from symbp.spec import Spec, Sum

OPTIONS = {}


def build():
    s = Spec("weighted_cosine", "mean of 1 - cos(w*x, t) over the batch")
    n, d = s.axes("n d")
    x = s.input("x", (n, d))
    t = s.input("t", (n, d))
    w = s.param("w", (1, d))
    u = s.let("u", w * x)
    dot = s.let("dot", Sum(d, u * t))
    uu = s.let("uu", Sum(d, u**2))
    tt = s.let("tt", Sum(d, t**2))
    cos = s.let("cos", dot * (uu * tt) ** sp.Rational(-1, 2))
    s.output("loss", 1 - Sum(n, cos) / n)
    return s
'''


def test_new_spec_needs_no_engine_change(tmp_path):
    """A layer that is none of symbp/layers: derived, generated and run, then held against torch
    autograd through the same formula written by hand."""
    import torch

    from symbp.verify.check import load_generated

    path = tmp_path / "weighted_cosine.py"
    path.write_text(NEW_SPEC)
    module = load_generated(str(path))
    g = torch.Generator().manual_seed(11)
    x, t = (torch.randn(13, 7, dtype=torch.float64, generator=g) for _ in range(2))
    w = torch.rand(1, 7, dtype=torch.float64, generator=g) + 0.5
    leaves = [v.clone().requires_grad_() for v in (x, t, w)]
    lx, lt, lw = leaves
    mids = {"u": lw * lx}
    mids["dot"] = (mids["u"] * lt).sum(1, keepdim=True)
    mids["uu"] = (mids["u"] ** 2).sum(1, keepdim=True)
    mids["tt"] = (lt**2).sum(1, keepdim=True)
    mids["cos"] = mids["dot"] / torch.sqrt(mids["uu"] * mids["tt"])
    loss = (1 - mids["cos"]).mean()
    for v in mids.values():
        v.retain_grad()
    dloss = torch.tensor(0.7, dtype=torch.float64)
    loss.backward(dloss)
    want = {"d" + k: v.grad for k, v in mids.items()} | {"dx": lx.grad, "dt": lt.grad, "dw": lw.grad}

    def close(a, b):
        return a.shape == b.shape and (a - b).abs().max() <= 1e-10 * b.abs().max()

    out, ctx = module.forward(x, t, w)
    assert close(out, loss.detach())
    chunked = module.backward_chunked(ctx, dloss)
    assert set(want) <= set(chunked)
    for name, v in want.items():
        assert close(chunked[name], v), name
    for name, got in zip(("dx", "dt", "dw"), module.backward(ctx, dloss), strict=True):
        assert close(got, want[name]), name


@pytest.mark.parametrize("build, message", [
    (lambda s, n, x: s.let("y", x * s.tensors["x"].symbol + sp.Symbol("zz")), "used before it is defined"),
    (lambda s, n, x: s.let("y", sp.besselj(0, x)), "unsupported function besselj"),
    (lambda s, n, x: s.let("y", Sum(sp.Symbol("k", integer=True, positive=True), x)), "undeclared axis"),
    (lambda s, n, x: s.let("x", x + 1), "already defined"),
    (lambda s, n, x: s.let("bad-name", x), "not a plain Python identifier"),
    (lambda s, n, x: s.let("y", Max(n, Sum(n, x))), "does not have"),
])
def test_bad_specs_are_rejected_with_the_binding_named(build, message):
    s = Spec("t", "t")
    n, d = s.axes("n d")
    x = s.input("x", (n, d))
    with pytest.raises(SpecError, match=message):
        build(s, n, x)


@pytest.mark.parametrize("layer", ["batchnorm", "cross_entropy", "attention", "linear_seq", "logsumexp"])
def test_the_record_is_what_the_engine_did(layer, monkeypatch):
    """Each recorded chain ends at the engine's result, each chain-rule term is the contribution
    before linearity, and the lesson prints the record instead of simplifying the gradients again."""
    from symbp.engine import simplify
    from symbp.engine.algebra import normalize

    d = symbp.derive(layer)
    for name, expr in d.fused.gradients.items():
        assert d.fused.traces[name].result == expr
    for key, value in d.fused.path_values.items():
        assert d.fused.path_traces[key].result == value
    for contribs in d.chunked.contributions.values():
        for c in contribs:
            assert sp.expand(normalize(d.spec, c.raw) - normalize(d.spec, c.expr)) == 0
    seen = []
    real = simplify.closed_form
    monkeypatch.setattr(simplify, "closed_form", lambda spec, expr, *a, **k: seen.append(expr) or real(
        spec, expr, *a, **k))
    known = set(d.fused.__dict__.get("_untidied", {}))  # the path values fuse already closed
    fused = next(s for s in d.lesson.sections if s.key == "fused")
    # only the paths' values, once each, and none that fuse closed already
    assert len(seen) == len(set(seen)) == len(set(d.fused.__dict__.get("_untidied", {})) - known)
    assert not known & set(seen)
    for eq in fused.equations:
        assert eq.chain[-1].expr == d.fused.gradients[eq.key[1:]]


def test_teaching_views_run_no_engine_step_of_their_own():
    """The views print the engine's record: they neither differentiate nor run the rewriting."""
    import ast
    from pathlib import Path

    for f in sorted((Path(symbp.__file__).parent / "teach").glob("*.py")):
        names = {n.id if isinstance(n, ast.Name) else n.attr for n in ast.walk(ast.parse(f.read_text()))
                 if isinstance(n, (ast.Name, ast.Attribute))}
        for word in ("diff", "local_form", "apply_identities", "rewrite", "basis_rewrites", "tidy",
                     "closed_form", "Inliner", "reduce_over"):
            assert word not in names, (f.name, word)
