"""Leaky ReLU whose slope is an option: a piecewise of Python scalars must keep the input's dtype."""
from symbp.functions import leaky_relu
from symbp.spec import Spec

OPTIONS = {"slope": (0.01, float, "negative slope")}


def build(slope=0.01):
    s = Spec("leaky_option", "leaky relu")
    n, d = s.axes("n d")
    x = s.input("x", (n, d))
    a = s.option("slope", slope)
    s.output("y", leaky_relu(x, a))
    return s
