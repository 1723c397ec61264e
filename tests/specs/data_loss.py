"""A scalar loss whose backward reads only data: L = Σ_n Σ_d x*j/3 (j may be int64)."""
from symbp.spec import Spec, Sum

OPTIONS = {}


def build():
    s = Spec("data_loss", "a loss whose gradient is data scaled by a number")
    n, d = s.axes("n d")
    x = s.input("x", (n, d))
    j = s.data("j", (n, d))
    s.output("L", Sum(n, Sum(d, x * j / 3)), dims=())
    s.save(x, j)
    return s
