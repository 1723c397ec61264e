"""The makemore MLP as one spec: embedding, linear, BatchNorm, tanh, linear, cross-entropy.

The whole-network derivation of ``benchmarks/whole_network.py``: the six
layers of ``symbp.makemore.model.forward`` written as one chain of bindings,
so that simplification could work across layer boundaries. ``W1`` is
``(t, e, d)``, the makemore ``(t*e, d)`` matrix seen per context position.
"""

from sympy import exp, log, sqrt, tanh

from symbp.spec import Max, Spec, Sum

OPTIONS = {"eps": (1e-5, float, "BatchNorm's variance epsilon")}


def build(eps=1e-5):
    s = Spec("mlp_whole", "the makemore MLP, end to end")
    n, t, v, e, d, c = s.axes("n t v e d c")
    X = s.classes("X", (n, t), v)
    Y = s.classes("Y", (n,), c)
    C = s.param("C", (v, e))
    W1 = s.param("W1", (t, e, d))
    b1 = s.param("b1", (d,))
    bngain = s.param("bngain", (1, d))
    bnbias = s.param("bnbias", (1, d))
    W2 = s.param("W2", (d, c))
    b2 = s.param("b2", (c,))
    ep = s.option("eps", eps)
    emb = s.let("emb", Sum(v, X * C), dims=(n, t, e))
    hprebn = s.let("hprebn", Sum(t, Sum(e, emb * W1)) + b1, dims=(n, d))
    bnmean = s.let("bnmean", Sum(n, hprebn) / n)
    bndiff = s.let("bndiff", hprebn - bnmean)
    bnvar = s.let("bnvar", Sum(n, bndiff**2) / (n - 1), nonnegative=True)
    bnvar_inv = s.let("bnvar_inv", 1 / sqrt(bnvar + ep))
    bnraw = s.let("bnraw", bndiff * bnvar_inv)
    h = s.let("h", tanh(bngain * bnraw + bnbias))
    logits = s.let("logits", Sum(d, h * W2) + b2, dims=(n, c))
    m = s.let("m", Max(c, logits))
    counts = s.let("counts", exp(logits - m))
    probs = s.let("probs", counts / Sum(c, counts))
    s.output("loss", -Sum(n, Sum(c, Y * log(probs))) / n)
    s.save(probs, h, bnraw, bnvar_inv, emb, X, Y)
    return s
