"""The logistic sigmoid, y = 1/(1 + exp(-x)), with its gradient written in y.

The fused backward reads only the output, ``dy*y*(1 - y)``, which stays
finite where ``exp(-x)`` overflows.
"""

from symbp.functions import sigmoid
from symbp.spec import Spec

OPTIONS = {}
CLASS = "Sigmoid"


def build():
    s = Spec("sigmoid", "logistic sigmoid")
    n, d = s.axes("n d")
    x = s.input("x", (n, d))
    s.output("y", sigmoid(x))
    s.save(s.tensors["y"].symbol)
    return s
