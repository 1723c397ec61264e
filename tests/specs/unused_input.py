"""An input the output does not depend on: its gradient is zero in both backward passes."""
from symbp.spec import Spec

OPTIONS = {}


def build():
    s = Spec("unused_input", "y = 2 w, x unused")
    n, d = s.axes("n d")
    s.input("x", (n, d))
    w = s.param("w", (n, d))
    s.output("y", w * 2)
    return s
