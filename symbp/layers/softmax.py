"""Softmax over the classes of each example, as a layer of its own (max-shifted, as in the seeds)."""

from sympy import exp

from symbp.spec import Max, Spec, Sum

OPTIONS = {}


def build():
    s = Spec("softmax", "softmax over the last axis, max-shifted for stability")
    n, c = s.axes("n c")
    x = s.input("x", (n, c))
    x_max = s.let("x_max", Max(c, x))
    counts = s.let("counts", exp(x - x_max))
    counts_sum = s.let("counts_sum", Sum(c, counts))
    probs = s.output("probs", counts / counts_sum)
    s.save(probs)
    return s
