"""logsumexp over classes, y = m + log(sum(exp(x - m))) with m the row maximum.

Its gradient is the softmax, ``dy*counts/sumexp``; the max path vanishes.
"""

from sympy import exp, log

from symbp.spec import Max, Spec, Sum

OPTIONS = {}
CLASS = "LogSumExp"


def build():
    s = Spec("logsumexp", "logsumexp over the last axis (kept as size one)")
    n, c = s.axes("n c")
    x = s.input("x", (n, c))
    m = s.let("m", Max(c, x))
    counts = s.let("counts", exp(x - m))
    sumexp = s.let("sumexp", Sum(c, counts))
    s.output("y", m + log(sumexp))
    s.save(counts, sumexp)
    return s
