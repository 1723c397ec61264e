"""ReLU, y = max(0, x), with torch's derivative at zero (0).

The simplest kink: the gradient passes where the input is positive and is
zero elsewhere, including at exactly zero, as ``torch.relu`` defines it.
"""

from symbp.functions import relu
from symbp.spec import Spec

OPTIONS = {}
CLASS = "ReLU"


def build():
    s = Spec("relu", "ReLU activation")
    n, d = s.axes("n d")
    x = s.input("x", (n, d))
    s.output("y", relu(x))
    s.save(x)
    return s
