"""Inverted dropout with the mask as data (Srivastava et al., 2014).

``mask`` holds 1 for kept and 0 for dropped units (draw it with
``torch.rand_like(x) >= p``); kept units are scaled by ``1/(1 - p)`` so the
expectation is unchanged. The mask is never differentiated.
"""

from symbp.spec import Spec

OPTIONS = {"p": (0.1, float, "drop probability, below 1")}
CLASS = "Dropout"


def build(p=0.1):
    s = Spec("dropout", "inverted dropout with a given mask")
    n, d = s.axes("n d")
    x = s.input("x", (n, d))
    mask = s.data("mask", (n, d))
    prob = s.option("p", p)
    s.output("y", x * mask / (1 - prob))
    s.save(mask)
    return s
