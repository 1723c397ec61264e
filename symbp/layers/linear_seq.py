"""A linear layer over inputs with an extra leading axis, y = x @ W + b for x of shape (n, t, i).

The weight gradient contracts over both the batch and the sequence axis at
once (one ``einsum``, which torch runs as a single matrix product).
"""

from symbp.spec import Spec, Sum

OPTIONS = {}
CLASS = "SeqLinear"


def build():
    s = Spec("linear_seq", "linear layer over (n, t, i) inputs")
    n, t, i, o = s.axes("n t i o")
    x = s.input("x", (n, t, i))
    W = s.param("W", (i, o))
    b = s.param("b", (o,))
    s.output("y", Sum(i, x * W) + b, dims=(n, t, o))
    s.save(x, W)
    return s
