"""Saving Abs(x) and x + tanh(x): non-injective and transcendental, never inverted."""

from sympy import Abs, tanh

from symbp.spec import Spec

OPTIONS = {}


def build():
    s = Spec("abs_saved", "saved Abs and x + tanh(x)")
    n, d = s.axes("n d")
    x = s.input("x", (n, d))
    a = s.let("a", Abs(x))
    b = s.let("b", x + tanh(x))
    s.output("y", a * b + a**2)
    s.save(a, b)
    return s
