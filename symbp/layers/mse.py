"""Mean squared error between a prediction and a target, averaged over every element."""

from symbp.spec import Spec, Sum

OPTIONS = {}


def build():
    s = Spec("mse", "mean squared error over all elements")
    n, d = s.axes("n d")
    pred = s.input("pred", (n, d))
    target = s.input("target", (n, d))
    diff = s.let("diff", pred - target)
    s.output("loss", Sum(n, Sum(d, diff**2)) / (n * d))
    s.save(diff)
    return s

CLASS = "MSELoss"
