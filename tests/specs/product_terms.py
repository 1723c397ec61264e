"""Data terms beside floats, over data that may be int64 or bool: y = x*(1 - k) + k*j + x*x*(1 + j/3)."""
from symbp.spec import Spec

OPTIONS = {}


def build():
    s = Spec("product_terms", "a*(1 + c*f) and data terms over data tensors")
    n, d = s.axes("n d")
    k = s.data("k", (n, d))  # data first: the float dtype must still come from x
    x = s.input("x", (n, d))
    j = s.data("j", (n, d))
    s.output("y", x * (1 - k) + k * j + x * x * (1 + j / 3))
    s.save(x, k, j)
    return s
