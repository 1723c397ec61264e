"""Linear layer y = x @ W + b: a contraction over the input features.

The engine sees ``Sum(i, x*W)``, a sum over an axis that two factors share;
its adjoints are the same kind of sum, which the lowering prints as the
matmuls ``dy @ W.T`` and ``x.T @ dy``.
"""

from symbp.spec import Spec, Sum

OPTIONS = {}


def build():
    s = Spec("linear", "y = x @ W + b")
    n, i, o = s.axes("n i o")
    x = s.input("x", (n, i))
    W = s.param("W", (i, o))
    b = s.param("b", (o,))
    s.output("y", Sum(i, x * W) + b, dims=(n, o))
    s.save(x, W)
    return s
