"""Arithmetic on data alone inside a layer: y = x*Σ_n(j)/3 + x**2*exp(j*k/7) (j, k may be int64)."""
from sympy import exp

from symbp.spec import Spec, Sum

OPTIONS = {}


def build():
    s = Spec("data_arith", "data-only subexpressions next to non-integer scalars and inside functions")
    n, d = s.axes("n d")
    x = s.input("x", (n, d))
    j = s.data("j", (n, d))
    k = s.data("k", (n, d))
    s.output("y", x * Sum(n, j) / 3 + x**2 * exp(j * k / 7), dims=(n, d))
    s.save(x, j, k)
    return s
