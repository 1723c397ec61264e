"""Log-softmax over classes, through a max-shifted logsumexp.

The max shift makes ``exp`` safe; the engine proves its gradient path is
zero, and the fused backward is ``dy - softmax*rowsum(dy)`` with the
softmax read from the saved ``counts/sumexp``.
"""

from sympy import exp, log

from symbp.spec import Max, Spec, Sum

OPTIONS = {}
CLASS = "LogSoftmax"


def build():
    s = Spec("log_softmax", "log-softmax over the last axis")
    n, c = s.axes("n c")
    x = s.input("x", (n, c))
    m = s.let("m", Max(c, x))
    counts = s.let("counts", exp(x - m))
    sumexp = s.let("sumexp", Sum(c, counts))
    s.output("y", x - m - log(sumexp))
    s.save(counts, sumexp)
    return s
