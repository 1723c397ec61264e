"""Binary cross-entropy on logits, mean over all elements; targets are data.

Written in the stable form ``softplus(z) - z*t`` (equal to
``-t*log(p) - (1 - t)*log(1 - p)`` with ``p = sigmoid(z)``), so neither the
loss nor its gradient ``dloss*(sigmoid(z) - t)/(n*d)`` overflows. This is
``torch.nn.functional.binary_cross_entropy_with_logits``.
"""

from symbp.functions import softplus
from symbp.spec import Spec, Sum

OPTIONS = {}
CLASS = "BCEWithLogits"


def build():
    s = Spec("bce_with_logits", "binary cross-entropy with logits, mean over all elements")
    n, d = s.axes("n d")
    z = s.input("z", (n, d))
    t = s.data("t", (n, d))
    s.output("loss", Sum(n, Sum(d, softplus(z) - z * t)) / (n * d))
    s.save(z, t)
    return s
