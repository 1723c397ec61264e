"""Huber loss (smooth L1 scaled by delta), mean over all elements (Huber, 1964).

Quadratic for residuals within ``delta``, linear beyond; the boundary
belongs to the quadratic branch, as in ``torch.nn.functional.huber_loss``.
"""

from sympy import Abs, Piecewise

from symbp.spec import Spec, Sum

OPTIONS = {"delta": (1.0, float, "where the loss turns from quadratic to linear")}
CLASS = "HuberLoss"


def build(delta=1.0):
    s = Spec("huber", "Huber loss, mean over all elements")
    n, d = s.axes("n d")
    pred = s.input("pred", (n, d))
    target = s.input("target", (n, d))
    k = s.option("delta", delta)
    r = s.let("r", pred - target)
    elem = Piecewise((r**2 / 2, Abs(r) <= k), (k * (Abs(r) - k / 2), True))
    s.output("loss", Sum(n, Sum(d, elem)) / (n * d))
    s.save(r)
    return s
