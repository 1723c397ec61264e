"""Exact GELU, y = x*Phi(x) with Phi the standard normal CDF (Hendrycks & Gimpel, 2016).

``Phi(x) = (1 + erf(x/sqrt(2)))/2``; its derivative brings the normal
density ``exp(-x**2/2)/sqrt(2*pi)``. This is ``torch.nn.functional.gelu``
with ``approximate='none'``.
"""

from sympy import erf, sqrt

from symbp.spec import Spec

OPTIONS = {}
CLASS = "GELU"


def build():
    s = Spec("gelu", "exact GELU (erf)")
    n, d = s.axes("n d")
    x = s.input("x", (n, d))
    cdf = s.let("cdf", (1 + erf(x / sqrt(2))) / 2)
    s.output("y", x * cdf)
    s.save(x, cdf)
    return s
