"""Label-smoothed cross-entropy: one-hot targets mixed with the uniform distribution."""

from sympy import exp, log

from symbp.spec import Max, Spec, Sum

OPTIONS = {"smoothing": (0.1, float, "weight of the uniform distribution")}


def build(smoothing=0.1):
    s = Spec("smoothed_ce", "label-smoothed cross-entropy")
    n, c = s.axes("n c")
    logits = s.input("logits", (n, c))
    y = s.classes("y", (n,), c)
    ls = s.option("smoothing", smoothing)
    m = s.let("m", Max(c, logits))
    counts = s.let("counts", exp(logits - m))
    total = s.let("total", Sum(c, counts))
    logp = s.let("logp", logits - m - log(total))
    s.output("loss", -Sum(n, Sum(c, ((1 - ls) * y + ls / c) * logp)) / n)
    s.save(counts, total)
    return s
