"""Pick a column of W per example: y[n, d] = W[d, Y[n]] * x[n, d]."""
from symbp.spec import Spec, Sum

OPTIONS = {}


def build():
    s = Spec("colpick", "column lookup")
    n, d, c = s.axes("n d c")
    x = s.input("x", (n, d))
    Y = s.classes("Y", (n,), c)
    W = s.param("W", (d, c))
    col = s.let("col", Sum(c, Y * W), dims=(n, d))
    s.output("y", Sum(n, Sum(d, col * x * x)))
    s.save(x, Y, W)
    return s
