"""RMSNorm (Zhang & Sennrich, 2019): each example scaled by its root mean square, learnable gain.

No mean is subtracted, so unlike LayerNorm there is no mean path to vanish;
the fused gradient keeps a single feature sum.
"""

from sympy import Rational

from symbp.spec import Spec, Sum

OPTIONS = {"eps": (1e-5, float, "added to the mean square before the square root")}


def build(eps=1e-5):
    s = Spec("rmsnorm", "RMSNorm over the features of each example, with a learnable gain")
    n, d = s.axes("n d")
    x = s.input("x", (n, d))
    gain = s.param("gain", (d,))
    e = s.option("eps", eps)
    ms = s.let("ms", Sum(d, x**2) / d, nonnegative=True)
    rrms = s.let("rrms", (ms + e) ** Rational(-1, 2))
    xhat = s.let("xhat", x * rrms)
    s.output("y", gain * xhat)
    s.save(xhat, rrms, gain)
    return s

CLASS = "RMSNorm"
