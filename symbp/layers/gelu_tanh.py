"""GELU with the tanh approximation (Hendrycks & Gimpel, 2016), as GPT-2 uses it.

``y = x/2*(1 + tanh(sqrt(2/pi)*(x + 0.044715*x**3)))``; saving the tanh
keeps the backward about as short as the forward. This is
``torch.nn.functional.gelu`` with ``approximate='tanh'``.
"""

from sympy import Rational, pi, sqrt, tanh

from symbp.spec import Spec

OPTIONS = {}
CLASS = "GELUTanh"


def build():
    s = Spec("gelu_tanh", "GELU, tanh approximation")
    n, d = s.axes("n d")
    x = s.input("x", (n, d))
    inner = s.let("inner", sqrt(2 / pi) * (x + Rational(44715, 1000000) * x**3))
    th = s.let("th", tanh(inner))
    s.output("y", x * (1 + th) / 2)
    s.save(x, th)
    return s
