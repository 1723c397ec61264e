"""h = x*exp(x), saved: no LambertW inverse."""

from sympy import exp

from symbp.spec import Spec

OPTIONS = {}


def build():
    s = Spec("xexp", "h = x*exp(x)")
    n, d = s.axes("n d")
    x = s.input("x", (n, d))
    h = s.let("h", x * exp(x))
    s.output("y", h**2 + h)
    s.save(h)
    return s
