"""LayerNorm (Ba, Kiros & Hinton, 2016): each example normalised over its features.

The same steps as BatchNorm with the roles of the axes swapped: mean and
(biased) variance over the features ``d`` of each row, then a per-feature
gain and bias.
"""

from sympy import Rational

from symbp.spec import Spec, Sum

OPTIONS = {"eps": (1e-5, float, "added to the variance before the square root")}


def build(eps=1e-5):
    s = Spec("layernorm", "LayerNorm over the features of each example")
    n, d = s.axes("n d")
    x = s.input("x", (n, d))
    gain = s.param("gain", (d,))
    bias = s.param("bias", (d,))
    e = s.option("eps", eps)
    mean = s.let("mean", Sum(d, x) / d)
    xc = s.let("xc", x - mean)
    var = s.let("var", Sum(d, xc**2) / d, nonnegative=True)
    rstd = s.let("rstd", (var + e) ** Rational(-1, 2))
    xhat = s.let("xhat", xc * rstd)
    s.output("y", gain * xhat + bias)
    s.save(xhat, rstd, gain)
    return s

CLASS = "LayerNorm"
