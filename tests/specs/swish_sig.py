"""Swish y = x*sigmoid(beta*x) saving only sig: x must stay an input, never log(sig/(1-sig))."""

from sympy import exp

from symbp.spec import Spec

OPTIONS = {}


def build():
    s = Spec("swish_sig", "swish, saving sig")
    n, d = s.axes("n d")
    x = s.input("x", (n, d))
    beta = s.param("beta", (1, d))
    sig = s.let("sig", 1 / (1 + exp(-beta * x)))
    s.output("y", x * sig)
    s.save(sig)
    return s
