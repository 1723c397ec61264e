"""Sums of scaled terms in the gradient: sizes (n - 1, d) and an option (gamma) as coefficients."""
from symbp.spec import Spec, Sum

OPTIONS = {"gamma": (0.75, float, "weight of the squared term")}


def build(gamma=0.75):
    s = Spec("scaled_sums", "scaled terms with broadcasting")
    n, d = s.axes("n d")
    x = s.input("x", (n, d))
    w = s.param("w", (1, d))
    a = s.option("gamma", gamma)
    mean = s.let("mean", Sum(n, x) / n, dims=(1, d))
    dev = s.let("dev", x - mean, dims=(n, d))
    s.output("y", dev**2 * w / (n - 1) + a * x * x * w / d + 3 * x * w / (n * d))
    s.save(x, w)
    return s
