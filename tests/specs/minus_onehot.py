"""A tensor minus a scaled one-hot over two index dims: y = Σ (p - 2Y)**2 with p = exp(x)."""
from sympy import exp

from symbp.spec import Spec, Sum

OPTIONS = {}


def build():
    s = Spec("minus_onehot", "squared distance from twice a one-hot")
    n, t, c = s.axes("n t c")
    x = s.input("x", (n, t, c))
    Y = s.classes("Y", (n, t), c)
    p = s.let("p", exp(x), dims=(n, t, c))
    s.output("y", Sum(n, Sum(t, Sum(c, (p - 2 * Y) ** 2))), dims=())
    s.save(p, Y)
    return s
