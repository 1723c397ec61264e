"""L2 normalisation of each row, y = x/sqrt(sum(x**2) + eps).

With the output and the inverse norm saved, the backward is the projection
``(dy - y*sum(dy*y))*rnorm``. ``eps`` keeps a zero row at zero (like
``torch.nn.functional.normalize``, which clamps the norm instead).
"""

from sympy import Rational

from symbp.spec import Spec, Sum

OPTIONS = {"eps": (1e-12, float, "added under the square root")}
CLASS = "L2Normalize"
#: a row of one element normalises to a constant, so its gradient is pure rounding: tests start at two
TEST_SIZE_RANGES = {"d": (2, 300)}


def build(eps=1e-12):
    s = Spec("l2_normalize", "row-wise L2 normalisation")
    n, d = s.axes("n d")
    x = s.input("x", (n, d))
    e = s.option("eps", eps)
    rnorm = s.let("rnorm", (Sum(d, x**2) + e) ** Rational(-1, 2), dims=(n, 1))
    y = s.output("y", x * rnorm)
    s.save(y, rnorm)
    return s
