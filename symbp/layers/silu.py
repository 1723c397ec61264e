"""SiLU (swish with slope 1), y = x*sigmoid(x) (Elfwing et al., 2017; Ramachandran et al., 2017).

Saving the sigmoid gives the closed form ``dy*sig*(1 + x*(1 - sig))``.
"""

from symbp.functions import sigmoid
from symbp.spec import Spec

OPTIONS = {}
CLASS = "SiLU"


def build():
    s = Spec("silu", "SiLU / swish activation")
    n, d = s.axes("n d")
    x = s.input("x", (n, d))
    sig = s.let("sig", sigmoid(x))
    s.output("y", x * sig)
    s.save(x, sig)
    return s
