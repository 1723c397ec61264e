"""`symbp grade`: learners' own answers from the seeds are correct, typical mistakes are named.

Correct answers are the seeds' notebook cells (../shared/seeds/), transcribed
as test data: ``VERBATIM`` fixtures are checked to appear in their seed
(whitespace aside), ``ADAPTED`` ones rename a seed's variables to the layer's
names, with the original line in a comment. Wrong answers are written here,
one per mistake a learner makes, and the diagnosis text is asserted.

The grader's exact evaluator is itself checked against torch autograd, so the
verdicts do not rest on symbp's own derivation.
"""

from fractions import Fraction
from functools import cache
from pathlib import Path

import pytest
import torch

from symbp import grade as grade_api
from symbp.cli import main
from symbp.grading import GradeError, Grader, World

SEEDS = Path(__file__).resolve().parent.parent.parent / "shared" / "seeds"


def seed_text(prefix: str) -> str:
    found = sorted(SEEDS.glob(prefix + "_*.txt")) if SEEDS.is_dir() else []
    if not found:
        pytest.skip(f"seed {prefix} is not in {SEEDS} (the seeds are shared data, not part of the repo)")
    return found[0].read_text(encoding="utf-8")


@cache
def grader(layer, **options):
    return Grader(layer, dict(options))


def graded(layer, source, **options):
    return grader(layer, **options).grade(source)


def squash(text: str) -> str:
    return "".join(text.split())


# ---------------------------------------------------------------------------
# The seeds' answers (exercise 1: chunked; exercises 2 and 3: fused)
# ---------------------------------------------------------------------------

# seed 000, cells 28-34 and 47 (cross-entropy), verbatim
SEED000_CE = """
dlogprobs = torch.zeros_like(logprobs)
dlogprobs[range(n), Yb] = -1.0/n
dprobs = (1.0 / probs) * dlogprobs
dcounts_sum_inv = (counts * dprobs).sum(1, keepdim=True)
dcounts_sum = (-counts_sum**-2) * dcounts_sum_inv
dcounts = counts_sum_inv * dprobs # Contribution from probs
dcounts += torch.ones_like(counts) * dcounts_sum # Contribution from sum
dnorm_logits = counts * dcounts
dlogits = dnorm_logits.clone() # Path 1
dlogit_maxes = (-dnorm_logits).sum(1, keepdim=True)
dlogits += F.one_hot(logits.max(1).indices, num_classes=logits.shape[1]) * dlogit_maxes # Path 2
probs_fast = F.softmax(logits, dim=1)
dlogits_fast = probs_fast.clone()
dlogits_fast[range(n), Yb] -= 1.0
dlogits_fast /= n
"""

# seed 000, cells 37-43 (batchnorm), verbatim
SEED000_BN = """
dbngain = (bnraw * dhpreact).sum(0, keepdim=True)
dbnbias = dhpreact.sum(0, keepdim=True)
dbnraw = bngain * dhpreact
dbnvar_inv = (bndiff * dbnraw).sum(0, keepdim=True)
dbndiff = bnvar_inv * dbnraw # Only the first contribution
dbnvar = (-0.5 * (bnvar + 1e-5)**-1.5) * dbnvar_inv
dbndiff2 = (1.0/(n-1)) * torch.ones_like(bndiff2) * dbnvar
dbndiff += (2 * bndiff) * dbndiff2
dbnmeani = (-dbndiff).sum(0, keepdim=True)
dhprebn = dbndiff.clone() # Path 1 contribution
dhprebn += (1.0/n) * (torch.ones_like(hprebn) * dbnmeani)
"""

# seed 000, the fused batchnorm cell that printed "approximate: False": it is algebraically
# right. Adapted: the seed's aux = (dlogits @ W2.T) * (1.0 - h**2) is this layer's dhpreact.
SEED000_BN_FUSED = """
bn_var_inv = (bnvar + 1e-5)**-0.5
aux = dhpreact
dbnraw_fast = bngain * aux
dhprebn_fast = bn_var_inv * (
    dbnraw_fast
    - dbnraw_fast.sum(0, keepdim=True) / n  # Mean contribution
    - bnraw * (dbnraw_fast * bnraw).sum(0, keepdim=True) / (n - 1)  # Variance contribution (uses n-1)
)
"""
SEED000_BN_FUSED_VERBATIM = SEED000_BN_FUSED.replace("aux = dhpreact\n", "")

# seed 001, exercise 1 (batchnorm part), exercise 2 and exercise 3, verbatim
SEED001_BN = """
dbnraw = bngain * dhpreact
dbnvar_inv = (bndiff * dbnraw).sum(0, keepdim=True)
dbndiff = bnvar_inv * dbnraw
dbnvar = (-0.5 * (bnvar + 1e-5) ** (-1.5)) * dbnvar_inv
dbndiff2 = (1.0 / (n-1)) * torch.ones_like(bndiff2) * dbnvar
dbndiff += 2 * bndiff * dbndiff2
dbnmeani = (-1.0) * dbndiff.sum(0, keepdim=True)
dhprebn = dbndiff.clone()
dhprebn += (1.0 / n) * torch.ones_like(hprebn) * dbnmeani
"""
SEED001_CE_FUSED = """
dlogits = (F.softmax(logits, dim=1) - F.one_hot(Yb, num_classes=logits.shape[1])) / n
"""
SEED001_BN_EX3 = """
dhprebn = dbndiff.clone() + (1.0 / n) * (torch.ones_like(hprebn) * dbnmeani)
"""

# seed 001, exercise 4: the whole chain from recomputed statistics. Adapted: the first two
# lines are the seed's own forward lines (bnmean = hprebn.mean(0, keepdim=True),
# bnvar = hprebn.var(0, keepdim=True, unbiased=True)); the rest is verbatim.
SEED001_EX4 = """
bnmean = hprebn.mean(0, keepdim=True)
bnvar = hprebn.var(0, keepdim=True, unbiased=True)
dbnraw = bngain * dhpreact
dbnvar_inv = ((hprebn - bnmean) * dbnraw).sum(0, keepdim=True)
dbndiff = bnvar_inv * dbnraw
dbnvar = (-0.5 * (bnvar + 1e-5) ** (-1.5)) * dbnvar_inv
dbndiff2 = (1.0 / (n-1)) * torch.ones_like((hprebn - bnmean)**2) * dbnvar
dbndiff += 2 * (hprebn - bnmean) * dbndiff2
dbnmeani = (-1.0) * dbndiff.sum(0, keepdim=True)
dhprebn = dbndiff.clone() + (1.0 / n) * (torch.ones_like(hprebn) * dbnmeani)
"""

# seed 002, exercise 1, verbatim (its dbnmeani is (d,), not (1, d): a shape that broadcasts)
SEED002_CE = """
dlogprobs = torch.zeros_like(logprobs)
dlogprobs[range(n), Yb] = -1.0/n
dprobs = (1.0/ probs) * dlogprobs
dcounts_sum_inv= (counts * dprobs).sum(1, keepdim=True)
dcounts = counts_sum_inv * dprobs
dcounts_sum = (-counts_sum**-2) * dcounts_sum_inv
dcounts += torch.ones_like(counts) * dcounts_sum
dnorm_logits = norm_logits.exp() * dcounts
dlogits = dnorm_logits.clone();
dlogit_maxes = (-dnorm_logits).sum(1, keepdim=True)
dlogits += F.one_hot(logits.max(1).indices, num_classes=logits.shape[1]) * dlogit_maxes
"""
SEED002_BN = """
dbngain = (bnraw * dhpreact).sum(0, keepdim=True)
dbnraw = (bngain * dhpreact)
dbnbias = dhpreact.sum(0, keepdim=True)
dbndiff = bnvar_inv * dbnraw
dbnvar_inv =  (bndiff * dbnraw).sum(0, keepdim = True)
dbnvar = -0.5 * ((bnvar + 1e-5) **-1.5 )* (dbnvar_inv)
dbndiff2 = (1.0 / (n - 1)) * torch.ones_like(bndiff2) *dbnvar
dbndiff += 2 * (bndiff) * dbndiff2
dhprebn = dbndiff.clone()
dbnmeani = (-dbndiff).sum(0)
dhprebn += (1.0/n)*torch.ones_like(hprebn) *dbnmeani
"""

# seed 004, adapted from its own names (d_hidden_pre_bn = d_centered_bn.clone(), and
# d_batch_mean_1st = (-torch.ones_like(centered_bn)*d_centered_bn).sum(0)): the seed's
# comparison printed "approximate: False" for the first (the mean path is missing).
SEED004_BN = """
dhprebn = dbndiff.clone()
dbnmeani = (-torch.ones_like(bndiff)*dbndiff).sum(0)
"""
# seed 004's tanh (d_hidden_pre_activation=(1-hidden**2); ...*=d_hidden), adapted names
SEED004_TANH = """
dx=(1-h**2)
dx*=dh
"""
# seed 004's output layer: d_b2= d_logits.sum(0, keepdim=True) is (1, o) for a (o,) bias
SEED004_LINEAR_DB = "db = dy.sum(0, keepdim=True)\n"
# seeds 000-002: dh = dlogits @ W2.T; dW2 = h.T @ dlogits; db2 = dlogits.sum(0), adapted names
SEED000_LINEAR = "dx = dy @ W.T\ndW = x.T @ dy\ndb = dy.sum(0)\n"

VERBATIM = [
    ("000", SEED000_CE), ("000", SEED000_BN), ("000", SEED000_BN_FUSED_VERBATIM),
    ("001", SEED001_BN), ("001", SEED001_CE_FUSED), ("001", SEED001_BN_EX3),
    ("001", SEED001_EX4.split("\n", 3)[3]), ("002", SEED002_CE), ("002", SEED002_BN),
]


@pytest.mark.parametrize("prefix, text", VERBATIM, ids=[f"seed{p}-{i}" for i, (p, _) in enumerate(VERBATIM)])
def test_verbatim_fixtures_are_the_seeds_own_lines(prefix, text):
    seed = squash(seed_text(prefix))
    for line in text.strip().splitlines():
        code = line.split("#")[0] if "#" in line and "(n - 1)" not in line else line
        assert squash(code.split("  #")[0]) in seed, line


def all_correct(report):
    return {v.name: v.line_text() for v in report if not v.correct}


@pytest.mark.parametrize("layer, source, names", [
    ("cross_entropy", SEED000_CE, ["dlogprobs", "dprobs", "dcounts_sum_inv", "dcounts_sum", "dcounts",
                                   "dnorm_logits", "dlogits", "dlogit_maxes", "dlogits_fast"]),
    ("batchnorm", SEED000_BN, ["dbngain", "dbnbias", "dbnraw", "dbnvar_inv", "dbndiff", "dbnvar",
                               "dbndiff2", "dbnmeani", "dhprebn"]),
    ("batchnorm", SEED000_BN_FUSED, ["dbnraw_fast", "dhprebn_fast"]),
    ("batchnorm", SEED001_BN + SEED001_BN_EX3, ["dbnraw", "dbnvar_inv", "dhprebn", "dbnmeani"]),
    ("cross_entropy", SEED001_CE_FUSED, ["dlogits"]),
    ("batchnorm", SEED001_EX4, ["dbnraw", "dbnvar_inv", "dbndiff", "dbnvar", "dbndiff2", "dbnmeani",
                                "dhprebn"]),
    ("cross_entropy", SEED002_CE, ["dlogprobs", "dnorm_logits", "dlogits", "dlogit_maxes"]),
    ("tanh", SEED004_TANH, ["dx"]),
    ("linear", SEED000_LINEAR, ["dx", "dW", "db"]),
], ids=["seed000-ce", "seed000-bn", "seed000-bn-fused", "seed001-bn", "seed001-ce-fused", "seed001-ex4",
        "seed002-ce", "seed004-tanh", "seeds-linear"])
def test_seed_answers_are_correct(layer, source, names):
    report = graded(layer, source)
    assert [v.name for v in report][: len(names)] == names or set(names) <= {v.name for v in report}
    assert all_correct(report) == {}
    assert report.all_correct


def test_seed002_dbnmeani_shape_is_wrong_but_its_dhprebn_is_right():
    report = graded("batchnorm", SEED002_BN)
    bad = all_correct(report)
    assert set(bad) == {"dbnmeani"}
    assert "shape (d,), but bnmeani is (1, d)" in bad["dbnmeani"]
    assert "keepdim=True" in bad["dbnmeani"] and "its values are right" in bad["dbnmeani"]


def test_seed004_missing_mean_path_and_broadcast_shape():
    report = graded("batchnorm", SEED004_BN)
    assert report["dhprebn"].diagnosis == "missing the path through bnmeani (the term dbnmeani/n)"
    assert report["dbnmeani"].diagnosis.startswith("shape (d,), but bnmeani is (1, d)")


def test_seed004_linear_bias_keepdim_is_wrong_shape():
    v = graded("linear", SEED004_LINEAR_DB)["db"]
    assert not v.correct and v.diagnosis == ("shape (1, o), but b is (o,): drop the size-one dim "
                                          "(no keepdim=True, or .squeeze()); its values are right")


def test_the_learners_fused_batchnorm_that_cmp_rejected_is_proven_right():
    """Seed 000's cell printed approximate: False; symbolically and exactly it is right."""
    v = graded("batchnorm", SEED000_BN_FUSED)["dhprebn_fast"]
    assert v.correct and v.notes == []


def test_biased_variance_layer_accepts_the_biased_formula_and_flags_bessel():
    src = SEED000_BN.replace("(1.0/(n-1))", "(1.0/n)")
    assert graded("batchnorm", src, variance="biased").all_correct
    report = graded("batchnorm", SEED000_BN, variance="biased")
    assert report["dbndiff2"].diagnosis.startswith(
        "you used Bessel's n - 1 where this layer's variance divides by n")
    assert "right given its inputs" in report["dbndiff"].diagnosis


# ---------------------------------------------------------------------------
# Mistakes, one kind at a time
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("layer, options, source, name, expected", [
    # a missing path
    ("batchnorm", {}, "dbndiff = bnvar_inv * dbnraw\n", "dbndiff",
     "missing the path through bndiff2 (the term 2*bndiff*dbndiff2)"),
    ("cross_entropy", {}, "dcounts = counts_sum_inv * dprobs\n", "dcounts",
     "missing the path through counts_sum (the term dcounts_sum)"),
    ("batchnorm", {}, "dhprebn = bngain*bnvar_inv/n * (n*dhpreact - n/(n-1)*bnraw*(dhpreact*bnraw).sum(0))\n",
     "dhprebn", "missing the path through bnmeani"),
    ("batchnorm", {}, "dhprebn = bngain*bnvar_inv/n * (n*dhpreact - dhpreact.sum(0))\n", "dhprebn",
     "missing the path through bndiff2 -> bnvar -> bnvar_inv"),
    ("layernorm", {}, "dx = rstd * gain * dy\n", "dx", "missing the paths through mean and var"),
    # n where Bessel's n - 1 belongs, fused and chunked
    ("batchnorm", {}, "dhprebn = bngain*bnvar_inv/n * (n*dhpreact - dhpreact.sum(0) "
                      "- bnraw*(dhpreact*bnraw).sum(0))\n", "dhprebn",
     "you divided by n where this layer's variance uses Bessel's n - 1 (yours is the gradient for "
     "--variance biased)"),
    ("batchnorm", {}, "dbndiff2 = (1.0/n) * torch.ones_like(bndiff2) * dbnvar\n", "dbndiff2",
     "you divided by n where this layer's variance uses Bessel's n - 1"),
    # a missing sum over a broadcast axis
    ("batchnorm", {}, "dbnvar_inv = bndiff * dbnraw\n", "dbnvar_inv",
     "missing sum over n: bnvar_inv is (1, d) and used along n, so its gradient sums over n "
     "(.sum(0, keepdim=True))"),
    ("cross_entropy", {}, "dcounts_sum_inv = counts * dprobs\n", "dcounts_sum_inv",
     "missing sum over c: counts_sum_inv is (n, 1) and used along c"),
    # the sum kept as (d,) where the gradient is (1, d)
    ("batchnorm", {}, "dbngain = (bnraw * dhpreact).sum(0)\n", "dbngain",
     "shape (d,), but bngain is (1, d): keep the summed dim, e.g. .sum(0, keepdim=True)"),
    # a sign error
    ("batchnorm", {}, "dbnmeani = dbndiff.sum(0, keepdim=True)\n", "dbnmeani",
     "sign error: yours is minus the gradient"),
    ("cross_entropy", {}, "dlogits = (F.one_hot(Yb, num_classes=27) - F.softmax(logits, 1)) / n\n", "dlogits",
     "sign error"),
    # a constant factor
    ("batchnorm", {}, "dbnvar = (-1.0 * (bnvar + 1e-5)**-1.5) * dbnvar_inv\n", "dbnvar",
     "off by a constant factor: yours is 2 times the gradient"),
    ("cross_entropy", {}, "dlogits = F.softmax(logits, 1) - F.one_hot(Yb, num_classes=27)\n", "dlogits",
     "off by a factor of n: yours is n times the gradient"),
    ("cross_entropy", {}, "dlogprobs = torch.zeros_like(logprobs)\ndlogprobs[range(n), Yb] = -1.0\n",
     "dlogprobs", "off by a factor of n"),
    ("batchnorm", {}, "dbnbias = dhpreact.mean(0, keepdim=True)\n", "dbnbias",
     "off by a factor of 1/n: yours is 1/n times the gradient"),
    # a forgotten factor
    ("batchnorm", {}, "dbnraw = dhpreact\n", "dbnraw", "a missing factor bngain"),
    # transposed matmuls
    ("linear", {}, "dW = dy.T @ x\n", "dW",
     "transposed: yours is (o, i) but W is (i, o) (swap the matmul's operands); its values are right"),
    ("linear", {}, "dx = dy @ W\n", "dx",
     "line 1: matmul (n, o) @ (i, o): inner dims o and i differ; did you mean W.T?"),
    # a sum over the wrong axis
    ("layernorm", {}, "dgain = (xhat * dy).sum(1)\n", "dgain",
     "yours runs along n where gain runs along d"),
    # nothing matches: the difference in saved quantities
    ("tanh", {}, "dx = (1.0 - torch.tanh(h)**2) * dh\n", "dx", "yours - derived = dh*(h**2 - tanh(h)**2)"),
    ("batchnorm", {}, "dbnvar = (-0.5 * (bnvar + 1e-5)**-0.5) * dbnvar_inv\n", "dbnvar",
     "a missing factor bnvar_inv**2: yours is the gradient divided by bnvar_inv**2"),
    ("batchnorm", {}, "dbnvar = -0.5 * (bnvar + 1e-5)**-1.5 + dbnvar_inv\n", "dbnvar", "yours - derived = "),
])
def test_mistakes_are_named(layer, options, source, name, expected):
    v = graded(layer, source, **options)[name]
    assert not v.correct
    assert expected in v.diagnosis, v.diagnosis


def test_an_error_is_traced_to_the_line_that_made_it():
    src = ("dbnraw = -bngain * dhpreact\n"
           "dbnvar_inv = (bndiff * dbnraw).sum(0, keepdim=True)\n"
           "dbnvar = (-0.5 * (bnvar + 1e-5)**-1.5) * dbnvar_inv * 2\n")
    report = graded("batchnorm", src)
    assert report["dbnraw"].diagnosis == "sign error: yours is minus the gradient"
    assert report["dbnvar_inv"].diagnosis == (
        "this line is right given its inputs, but it uses dbnraw, which is wrong")
    assert report["dbnvar"].diagnosis == ("off by a constant factor: yours is 2 times the gradient; "
                                          "also, it uses dbnvar_inv, which is wrong")


def test_near_misses_are_never_correct():
    """Small perturbations of right answers: each must be graded wrong."""
    right = ("dhprebn = bngain*bnvar_inv/n * "
             "(n*dhpreact - dhpreact.sum(0) - n/(n-1)*bnraw*(dhpreact*bnraw).sum(0))\n")
    assert graded("batchnorm", right).all_correct
    for bad in (right.replace("n/(n-1)", "n/(n-2)"), right.replace("bnvar_inv/n", "bnvar_inv/(n+1)"),
                right.replace("(dhpreact*bnraw)", "(dhpreact*bnraw**2)"),
                right.replace("- dhpreact.sum(0)", ""),
                right.replace("bnvar_inv/n", "(bnvar + 1e-3)**-0.5/n")):
        assert not grader("batchnorm").grade(bad, explain=False).all_correct, bad
    ce = "dlogits = (F.softmax(logits, 1) - F.one_hot(Yb, num_classes=27)) / n\n"
    assert graded("cross_entropy", ce).all_correct
    for bad in (ce.replace("/ n", "/ (n - 1)"), ce.replace("F.softmax(logits, 1)", "F.softmax(logits, 1)**2"),
                ce.replace("logits, 1)", "logits, 0)")):
        assert not grader("cross_entropy").grade(bad, explain=False).all_correct, bad


def test_dloss_may_be_left_out_or_used():
    assert graded("cross_entropy", "dlogits = (probs - F.one_hot(Yb, num_classes=27)) / n\n").all_correct
    with_dloss = "dlogits = dloss * (probs - F.one_hot(Yb, num_classes=27)) / n\n"
    assert graded("cross_entropy", with_dloss).all_correct
    v = graded("cross_entropy", "dlogits = dloss * dloss * (probs - F.one_hot(Yb, num_classes=27)) / n\n")
    assert not v.all_correct


def test_idioms_of_unseen_answers():
    ce = """
from torch.nn import functional as F
with torch.no_grad():
    dlogprobs = -F.one_hot(Yb, num_classes=27).float() / n
dprobs = dlogprobs / probs
dcounts_sum_inv = (dprobs * counts).sum(dim=1, keepdims=True)
dcounts_sum = -dcounts_sum_inv / counts_sum**2
dcounts = dprobs * counts_sum_inv + dcounts_sum
dnorm_logits = dcounts * norm_logits.exp()
dlogit_maxes = -dnorm_logits.sum(-1, keepdim=True)
dlogits = dnorm_logits.clone()
dlogits[torch.arange(n), logits.max(1).indices] += dlogit_maxes.view(-1)
"""
    assert all_correct(graded("cross_entropy", ce)) == {}
    bn = """
dbnraw, dbngain = bngain * dhpreact, torch.sum(bnraw * dhpreact, dim=0, keepdim=True)
dbnvar_inv = (bndiff * dbnraw).sum(axis=0, keepdims=True)
dbnvar = -0.5 * dbnvar_inv * bnvar_inv**3
dbndiff2 = torch.ones_like(bndiff2) * dbnvar / (n - 1)
dbndiff = bnvar_inv * dbnraw + 2 * bndiff * dbndiff2
dbnmeani = -dbndiff.sum(0).view(1, -1)
dhprebn = dbndiff + dbnmeani / n
dbnbias = dhpreact.sum(0).unsqueeze(0)
"""
    assert all_correct(graded("batchnorm", bn)) == {}
    lin = "dx = torch.matmul(dy, W.transpose(0, 1))\ndW = x.t().mm(dy)\ndx.shape\n"
    ce_rows = ("dlogprobs = torch.zeros_like(logprobs)\n"
               "dlogprobs[range(len(Yb)), Yb] = -1.0/Yb.shape[0]\n"
               "cmp('logprobs', dlogprobs, logprobs)\n")
    assert all_correct(graded("cross_entropy", ce_rows)) == {}
    assert all_correct(graded("linear", lin)) == {}
    ln = ("dxhat = gain * dy\n"
          "dx = rstd / d * (d * dxhat - dxhat.sum(1, keepdim=True)"
          " - xhat * (dxhat * xhat).sum(-1, keepdim=True))\n")
    assert all_correct(graded("layernorm", ln)) == {}


def test_unshifted_softmax_is_right_with_a_note():
    v = graded("cross_entropy",
               "dlogits = (torch.exp(logits) / torch.exp(logits).sum(1, keepdims=True)"
               " - F.one_hot(Yb, 27)) / n\n")
    v = v["dlogits"]
    assert v.correct and "overflows in float32" in v.notes[0]


def test_a_spec_file_is_graded(tmp_path):
    spec = tmp_path / "square.py"
    spec.write_text('"""y = a * x**2, a toy layer."""\n'
                    "from symbp.spec import Spec\n\nOPTIONS = {}\n\n\n"
                    "def build():\n"
                    "    s = Spec('square', 'y = a*x**2')\n"
                    "    n, d = s.axes('n d')\n"
                    "    x = s.input('x', (n, d))\n"
                    "    a = s.param('a', (1, d))\n"
                    "    s.output('y', a * x**2)\n"
                    "    s.save(x, a)\n"
                    "    return s\n")
    report = grade_api(str(spec), "dx = 2 * a * x * dy\nda = (x**2 * dy).sum(0, keepdim=True)\n")
    assert report.all_correct
    bad = grade_api(str(spec), "dx = a * x * dy\n")
    assert bad["dx"].diagnosis == "off by a constant factor: yours is 1/2 times the gradient"


# ---------------------------------------------------------------------------
# The report and the command line
# ---------------------------------------------------------------------------

def test_report_views():
    report = graded("batchnorm", "dbnraw = bngain * dhpreact\ndbnmeani = dbndiff.sum(0, keepdim=True)\n")
    assert report.text() == "dbnraw: correct\ndbnmeani: wrong: sign error: yours is minus the gradient\n"
    md = report._repr_markdown_()
    assert "1 of 2 correct" in md and "yours" in md and "derived" in md
    tex = report._repr_latex_()
    assert tex.startswith("$$\\begin{aligned}") and r"\mathtt{dbnmeani}" in tex and r"\sum_{n}" in tex


def write(tmp_path, text, name="answer.py"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_cli_exit_codes(tmp_path, capsys):
    assert main(["grade", "batchnorm", write(tmp_path, SEED000_BN)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "dbngain: correct" and len(out) == 9 and all(line.endswith(": correct") for line in out)
    assert main(["grade", "batchnorm", write(tmp_path, SEED004_BN)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == ["dhprebn: wrong: missing the path through bnmeani (the term dbnmeani/n)",
                   "dbnmeani: wrong: shape (d,), but bnmeani is (1, d): keep the summed dim, e.g. "
                   ".sum(0, keepdim=True) (a (d,) tensor broadcasts silently, which hides this); "
                   "its values are right"]
    src = SEED000_BN.replace("(1.0/(n-1))", "(1.0/n)")
    assert main(["grade", "batchnorm", write(tmp_path, src), "--variance", "biased"]) == 0
    capsys.readouterr()


@pytest.mark.parametrize("text, expected", [
    ("dbnraw = bngain * dhpreact\nfor i in range(3):\n    pass\n", "answer.py line 2: For statements"),
    ("dbnraw = bngain *\n", "answer.py line 1: invalid Python syntax"),
    ("dbnraw = W2 * dhpreact\n", "answer.py line 1: unknown name 'W2'"),
    ("\n\ndbnraw = bngain.foo() * dhpreact\n", "answer.py line 3: the method .foo() is not supported"),
    ("x = 1\n", "answer.py: no gradient of batchnorm is assigned"),
    ("dbnraw = bngain ** dhpreact\n", "answer.py line 1: only a number can be an exponent"),
])
def test_cli_unreadable_answer_is_one_line_exit_2(tmp_path, capsys, text, expected):
    assert main(["grade", "batchnorm", write(tmp_path, text)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], captured.err


def test_cli_usage_errors(tmp_path, capsys):
    assert main(["grade", "batchnorm", str(tmp_path / "missing.py")]) == 2
    assert main(["grade", "batchnorm", write(tmp_path, SEED000_BN), "--variance", "nope"]) == 2
    assert main(["grade", "nolayer", write(tmp_path, SEED000_BN)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("symbp: error: ") for line in err)


def test_python_api_raises_grade_error_for_unreadable():
    with pytest.raises(GradeError, match="line 1"):
        grade_api("batchnorm", "dbnraw = [1, 2]\n")


# ---------------------------------------------------------------------------
# The exact evaluator against torch autograd (an independent reference)
# ---------------------------------------------------------------------------

def _tensor(values: dict, shape):
    t = torch.zeros(shape, dtype=torch.float64)
    for idx, v in values.items():
        t.view(-1)[_flat(idx, shape)] = float(v)
    return t


def _flat(idx, shape):
    sizes = [s for s in shape if s != 1]
    k = 0
    for i, s in zip(idx, sizes):
        k = k * s + i
    return k


def test_exact_gradients_match_autograd_batchnorm():
    g = grader("batchnorm")
    w = World(g.spec, {a: s for a, s in zip(g.spec.axis_list, (4, 3))}, seed=5, dout_one=False)
    n, d = 4, 3
    x = _tensor(w.values["hprebn"], (n, d)).requires_grad_()
    gain = _tensor(w.values["bngain"], (1, d)).requires_grad_()
    bias = _tensor(w.values["bnbias"], (1, d)).requires_grad_()
    eps = float(next(iter(w.options.values())))
    mean = x.sum(0, keepdim=True) / n
    var = ((x - mean) ** 2).sum(0, keepdim=True) / (n - 1)
    out = gain * (x - mean) * (var + eps) ** -0.5 + bias
    out.backward(_tensor(w.dout, (n, d)))
    for name, ref, shape in (("hprebn", x, (n, d)), ("bngain", gain, (1, d)), ("bnbias", bias, (1, d))):
        got = _tensor(w.gradient(name), shape)
        torch.testing.assert_close(got, ref.grad, rtol=1e-10, atol=1e-12)


def test_exact_gradients_match_autograd_cross_entropy():
    g = grader("cross_entropy")
    w = World(g.spec, {a: s for a, s in zip(g.spec.axis_list, (3, 4))}, seed=2, dout_one=True)
    n, c = 3, 4
    logits = _tensor(w.values["logits"], (n, c)).requires_grad_()
    hot = w.values["targets"]
    y = torch.tensor([next(k for k in range(c) if hot[(i, k)] == 1) for i in range(n)])
    torch.nn.functional.cross_entropy(logits, y).backward()
    torch.testing.assert_close(_tensor(w.gradient("logits"), (n, c)), logits.grad, rtol=1e-10, atol=1e-12)
    assert all(isinstance(v, Fraction) for v in w.values["targets"].values())


def test_readme_gradings_are_what_the_command_prints(tmp_path, capsys):
    """The README's two examples, run: the answer files and the printed verdicts."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Grading a hand-written backward", 1)[1].split("\n## ", 1)[0]
    blocks = section.split("    $ cat ")[1:]
    assert len(blocks) == 2
    for block, code in zip(blocks, (0, 1)):
        raw = block.splitlines()
        end = next((i for i, line in enumerate(raw) if i and line and not line.startswith("    ")), len(raw))
        lines = [line[4:] for line in raw[:end]]
        name = lines[0]
        cmd = next(i for i, line in enumerate(lines) if line.startswith("$ symbp grade"))
        answer = "\n".join(lines[1:cmd]) + "\n"
        expected = [line for line in lines[cmd + 1:] if line and not line.startswith("exit ")]
        assert main(["grade", "batchnorm", write(tmp_path, answer, name)]) == code
        assert capsys.readouterr().out.splitlines() == expected


def test_a_gradient_read_before_backprop_has_it_is_wrong():
    report = graded("batchnorm", "dbnraw = dbnraw\ndbnvar = dbndiff2 * (n - 1)\n")
    assert report["dbnraw"].diagnosis == "it reads dbnraw, the gradient it defines"
    assert report["dbnvar"].diagnosis.startswith("it reads dbndiff2, which backprop computes from dbnvar")


def test_comparisons_and_where_are_read_as_piecewise():
    """tanh's h lies in (-1, 1), so the where() never takes its first branch: still correct."""
    v = graded("tanh", "dx = torch.where(h > 2, 0 * dh, (1 - h**2) * dh)\n")["dx"]
    assert v.correct
    wrong = graded("tanh", "dx = (h > 0) * (1 - h**2) * dh\n")["dx"]
    assert not wrong.correct


def test_exact_evaluator_falls_back_to_sympy_numerics_for_other_functions():
    import mpmath
    import sympy as sp

    g = grader("tanh")
    x = g.spec.tensors["x"]
    w = World(g.spec, {a: 2 for a in g.spec.axis_list}, seed=3, dout_one=False)
    got = w.over(sp.erf(x.symbol) + sp.Max(x.symbol, 0), x.dims)
    for idx, value in got.items():
        v = w.values["x"][idx]
        want = mpmath.erf(mpmath.mpf(v.numerator) / v.denominator) + max(float(v), 0)
        assert abs(float(value) - float(want)) < 1e-12


def test_a_literal_batch_size_is_ignored_with_a_note():
    report = graded("batchnorm", "n = 32\ndhprebn = dbndiff + (-dbndiff.sum(0, keepdim=True)) / n\n")
    assert report.all_correct
    assert report.notes() == [
        "line 1: n = 32 is ignored; n stays a symbol, so the answer is checked for every size"]


def test_markdown_keeps_names_literal_and_shows_the_shape():
    md = graded("batchnorm", "dbnvar_inv = (bndiff * dbnraw).sum(0)\n")._repr_markdown_()
    assert r"bnvar\_inv is (1, d)" in md and "(shape (d,), not (1, d))" in md


def test_a_right_answer_that_loses_precision_gets_a_note_not_a_wrong():
    v = graded("batchnorm", "dbnraw = (bngain + 10**8) * dhpreact - 10**8 * dhpreact\n")["dbnraw"]
    assert v.correct
    assert len(v.notes) == 1
    assert "in float32 yours is off by" in v.notes[0] and "loses precision" in v.notes[0]
    assert graded("batchnorm", "dbnraw = bngain * dhpreact\n")["dbnraw"].notes == []


# ---------------------------------------------------------------------------
# Answers right at random points but wrong where they branch; copies of a fused answer
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("answer", [
    "dx = dy * (x > 0.1)\n",  # the threshold moved: random points rarely fall in (0, 0.1]
    "dx = dy * (x > -1e-30)\n",  # 1 at x = 0, where relu's gradient (torch's too) is 0
    "dx = (x >= 0).float() * dy\n",
    "dx = dy * (x > 0) + 5 * ((x >= 0).float() - (x > 0).float())\n",
])
def test_an_answer_wrong_only_near_a_branch_point_is_wrong(answer):
    (v,) = graded("relu", answer).verdicts
    assert not v.correct
    assert "where it branches" in v.diagnosis


@pytest.mark.parametrize("answer", ["dx = dy * (x > 0)\n", "dx = torch.where(x > 0, dy, 0.0)\n",
                                    "dx = dy * (x > 0).float()\n"])
def test_relu_right_answers_stay_right_on_the_branch_points(answer):
    assert all(v.correct for v in graded("relu", answer).verdicts)


def test_a_gradient_copied_from_its_fused_name_is_graded_as_that_answer():
    right = ("probs_fast = F.softmax(logits, dim=1)\ndlogits_fast = probs_fast.clone()\n"
             "dlogits_fast[range(n), Yb] -= 1.0\ndlogits_fast /= n\ndlogits = dlogits_fast\n")
    assert [v.correct for v in graded("cross_entropy", right).verdicts] == [True, True]
    wrong = right.replace("dlogits_fast /= n\n", "")
    verdicts = graded("cross_entropy", wrong).verdicts
    assert [v.correct for v in verdicts] == [False, False]


def test_a_mistyped_gradient_name_is_noted_not_silently_ignored():
    report = graded("cross_entropy", "dlogit = probs\ndlogprobs = torch.zeros_like(logprobs)\n"
                                     "dlogprobs[range(n), Yb] = -1.0/n\n")
    assert any("dlogit is not a gradient" in note and "dlogits" in note for note in report.general_notes)


def test_the_seeds_minibatch_name_xb_reads_as_the_embedding_indices():
    answer = "dC = (F.one_hot(Xb, v).float().unsqueeze(-1) * demb.unsqueeze(2)).sum((0, 1))\n"
    report = graded("embedding", answer)
    assert all(v.correct for v in report.verdicts)


@pytest.mark.parametrize("answer, right", [
    ("dx = dy.clone()\ndx[x <= 0] = 0\n", True),
    ("dx = dy * 1.0\ndx[x <= 0] *= 0\n", True),
    ("dx = dy.clone()\ndx[x < 0] = 0\n", False),  # 1 at x = 0: only the branch points show it
    ("dx = dy.clone()\ndx[x > 0] = 0\n", False),
])
def test_a_masked_assignment_is_read_along_the_positions_it_selects(answer, right):
    (v,) = graded("relu", answer).verdicts
    assert v.correct is right
