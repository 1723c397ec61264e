"""Log-softmax through logsumexp, saving the probabilities' ingredients."""

from sympy import exp, log

from symbp.spec import Max, Spec, Sum

OPTIONS = {}


def build():
    s = Spec("log_softmax_lse", "log-softmax via logsumexp")
    n, c = s.axes("n c")
    z = s.input("z", (n, c))
    m = s.let("m", Max(c, z))
    counts = s.let("counts", exp(z - m))
    sumexp = s.let("sumexp", Sum(c, counts))
    lse = s.let("lse", m + log(sumexp))
    s.output("out", z - lse)
    s.save(counts, sumexp)
    return s
