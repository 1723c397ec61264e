"""Scaled terms over integer data: y = x * (k + 3*k*j/n) + z, z = k + k*k/2 (k, j may be int64)."""
from symbp.spec import Spec

OPTIONS = {}


def build():
    s = Spec("int_data", "scaled terms of data tensors")
    n, d = s.axes("n d")
    x = s.input("x", (n, d))
    k = s.data("k", (n, d))
    j = s.data("j", (n, d))
    z = s.let("z", k + k * k / 2, dims=(n, d))
    s.output("y", x * (k + 3 * k * j / n) + z * x * x)
    s.save(x, k, j)
    return s
