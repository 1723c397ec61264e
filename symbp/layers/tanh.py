"""Elementwise tanh, the seeds' hidden non-linearity.

Its local derivative ``1 - tanh(x)**2`` is written by the engine in terms of
the saved output ``h``, so the backward never recomputes tanh.
"""

from sympy import tanh

from symbp.spec import Spec

OPTIONS = {}


def build():
    s = Spec("tanh", "h = tanh(x), elementwise")
    n, d = s.axes("n d")
    x = s.input("x", (n, d))
    h = s.output("h", tanh(x))
    s.save(h)
    return s
