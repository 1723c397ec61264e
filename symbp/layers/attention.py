"""Single-head scaled dot-product attention (Vaswani et al., 2017) over (b, t, h) queries.

``scores = q.k/sqrt(h)`` (plus an additive ``bias`` of shape (t, s) with the
``mask=additive`` variant: 0 to keep, -inf to hide, for causal or padding
masks), a max-shifted softmax over the keys, and the weighted sum of values.
Saving the probabilities gives the usual ``dS = P*(dP - rowsum(P*dP))``.
"""

from sympy import exp, sqrt

from symbp.spec import Max, Spec, Sum

OPTIONS = {"mask": ("none", ("none", "additive"), "an additive (t, s) mask given as data")}
CLASS = "Attention"


def build(mask="none"):
    s = Spec("attention", "single-head scaled dot-product attention")
    b, t, sk, h = s.axes("b t s h")
    q = s.input("q", (b, t, h))
    k = s.input("k", (b, sk, h))
    v = s.input("v", (b, sk, h))
    scores = Sum(h, q * k) / sqrt(h)
    if mask == "additive":
        scores = scores + s.data("bias", (t, sk))
    att = s.let("att", scores, dims=(b, t, sk))
    m = s.let("m", Max(sk, att))
    counts = s.let("counts", exp(att - m))
    probs = s.let("probs", counts / Sum(sk, counts))
    s.output("y", Sum(sk, probs * v), dims=(b, t, h))
    s.save(probs, q, k, v)
    return s
