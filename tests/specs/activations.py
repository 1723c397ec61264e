"""Elementwise functions with kinks and ties: relu, leaky relu, max/min, erf, sign, softplus, sigmoid."""

import sympy as sp

from symbp.functions import leaky_relu, relu
from symbp.spec import Spec

OPTIONS = {}


def build():
    s = Spec("activations", "mixed elementwise functions")
    n, d = s.axes("n d")
    x = s.input("x", (n, d))
    y = s.input("y", (n, d))
    a = s.let("a", relu(x) + leaky_relu(y, sp.Rational(1, 10)) + sp.Max(x, y) + sp.Min(x, 0))
    b = s.let("b", sp.erf(x) + sp.sin(y) * sp.cos(x) + sp.sqrt(x**2 + 1) + sp.sign(x) * sp.Abs(y))
    c = s.let("c", sp.log(1 + sp.exp(x)) + 1 / (1 + sp.exp(-y)) + sp.Heaviside(x, 0) * y)
    s.output("out", a * b + c)
    return s
