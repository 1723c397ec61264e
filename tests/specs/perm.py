"""A contraction whose binding is laid out (d, n): z = (x @ W).T, then a weighted sum of squares."""
from symbp.spec import Spec, Sum

OPTIONS = {}


def build():
    s = Spec("perm", "transposed matmul")
    n, i, d = s.axes("n i d")
    x = s.input("x", (n, i))
    W = s.param("W", (i, d))
    v = s.param("v", (d, n))
    z = s.let("z", Sum(i, x * W), dims=(d, n))
    s.output("y", Sum(d, Sum(n, z * z * v)))
    s.save(x, W, v)
    return s
