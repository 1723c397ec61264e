"""a = x*w; y = a + a**2, saving a and w: w may be zero, so x must not become a/w."""

from symbp.spec import Spec

OPTIONS = {}


def build():
    s = Spec("scaled_square", "a = x*w; y = a + a**2")
    n, d = s.axes("n d")
    x = s.input("x", (n, d))
    w = s.param("w", (1, d))
    a = s.let("a", x * w)
    s.output("y", a + a**2)
    s.save(a, w)
    return s
