"""A parameter the output does not depend on: its gradient is zero, not an error."""

from sympy import tanh

from symbp.spec import Spec

OPTIONS = {}


def build():
    s = Spec("unused_param", "unused parameter")
    n, d = s.axes("n d")
    x = s.input("x", (n, d))
    s.param("w", (1, d))
    s.output("y", tanh(x))
    return s
