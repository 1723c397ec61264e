"""Log-sigmoid written as the math: log(1/(1 + exp(-x))) (SymPy sees a sigmoid inside a log)."""
from sympy import exp, log

from symbp.spec import Spec

OPTIONS = {}


def build():
    s = Spec("log_sigmoid", "log of the logistic function")
    n, d = s.axes("n d")
    x = s.input("x", (n, d))
    s.output("y", log(1 / (1 + exp(-x))))
    return s
