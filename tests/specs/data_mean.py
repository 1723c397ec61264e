"""A binding that is a mean of data alone: m = Σ_n(k)/n, y = x*m (k may be int64)."""
from symbp.spec import Spec, Sum

OPTIONS = {}


def build():
    s = Spec("data_mean", "a statement computed from data alone")
    n, d = s.axes("n d")
    x = s.input("x", (n, d))
    k = s.data("k", (n, d))
    m = s.let("m", Sum(n, k) / n, dims=(d,))
    s.output("y", x * m, dims=(n, d))
    s.save(x, k)
    return s
