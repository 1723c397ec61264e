"""Embedding lookup emb = C[X]: one row of C per integer index, over a context.

In the spec the lookup is a contraction of the one-hot indices with ``C``;
the lowering turns it into indexing forward and ``index_add_`` backward,
never a dense one-hot matmul or a Python loop.
"""

from symbp.spec import Spec, Sum

OPTIONS = {}


def build():
    s = Spec("embedding", "emb = C[X], rows of C looked up by integer indices")
    n, t, v, e = s.axes("n t v e")
    C = s.param("C", (v, e))
    X = s.classes("X", (n, t), v)
    s.output("emb", Sum(v, X * C), dims=(n, t, e))
    s.save(X)
    return s
