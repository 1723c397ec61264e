"""Hardtanh written with SymPy's Min and Max (SymPy states its conditions with ITE)."""
import sympy

from symbp.spec import Spec

OPTIONS = {}


def build():
    s = Spec("clamp", "clamp to [-1, 1]")
    n, d = s.axes("n d")
    x = s.input("x", (n, d))
    s.output("y", sympy.Min(1, sympy.Max(-1, x)))
    return s
