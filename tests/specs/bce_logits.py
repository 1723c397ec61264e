"""Binary cross-entropy with logits, targets as an input tensor, mean over the batch."""

from sympy import exp, log

from symbp.spec import Spec, Sum

OPTIONS = {}


def build():
    s = Spec("bce_logits", "BCE with logits")
    (n,) = s.axes("n"),
    z = s.input("z", (n,))
    t = s.data("t", (n,))
    p = s.let("p", 1 / (1 + exp(-z)))
    s.output("loss", -Sum(n, t * log(p) + (1 - t) * log(1 - p)) / n)
    s.save(p, t)
    return s
