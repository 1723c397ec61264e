"""Swish saving x, sig and beta: the fused form must be written in sig (finite everywhere)."""

from sympy import exp

from symbp.spec import Spec

OPTIONS = {}


def build():
    s = Spec("swish_all", "swish, saving x, sig, beta")
    n, d = s.axes("n d")
    x = s.input("x", (n, d))
    beta = s.param("beta", (1, d))
    sig = s.let("sig", 1 / (1 + exp(-beta * x)))
    s.output("y", x * sig)
    s.save(x, sig, beta)
    return s
