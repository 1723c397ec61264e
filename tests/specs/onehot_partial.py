"""A one-hot summed over only some of its index axes: z[t, v, e] = Σ_n X[n, t, v]*a[n, t, e]."""

from symbp.spec import Spec, Sum

OPTIONS = {}


def build():
    s = Spec("onehot_partial", "partial one-hot contraction")
    n, t, v, e = s.axes("n t v e")
    X = s.classes("X", (n, t), v)
    a = s.input("a", (n, t, e))
    w = s.param("w", (t, v, e))
    z = s.let("z", Sum(n, X * a), dims=(t, v, e))
    s.output("y", Sum(t, Sum(v, Sum(e, z * z * w))))
    s.save(X, a, w)
    return s
