"""A CSE temporary inside a contraction: y = Σ_i exp(m*z)*x*W + Σ_i m*z*V (x, z, m data)."""

from sympy import exp

from symbp.spec import Spec, Sum

OPTIONS = {}


def build():
    s = Spec("temp_in_matmul", "a temporary with axes inside a matmul")
    n, i, o = s.axes("n i o")
    x = s.data("x", (n, i))
    z = s.data("z", (n, i))
    m = s.data("m", (n, i))
    W = s.param("W", (i, o))
    V = s.param("V", (i, o))
    s.output("y", Sum(i, exp(m * z) * x * W) + Sum(i, m * z * V), dims=(n, o))
    s.save(x, z, m, W, V)
    return s
