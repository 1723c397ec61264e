"""BatchNorm1d in training mode (Ioffe & Szegedy, 2015), in the seeds' chunked form.

Normalises each feature over the batch with the batch mean and variance, then
scales by ``bngain`` and shifts by ``bnbias``. The variance is
Bessel-corrected (n - 1) by default, as in makemore part 4; ``variance=biased``
divides by n, as torch's BatchNorm does when it normalises in training.
"""

from sympy import Rational

from symbp.spec import Spec, Sum

OPTIONS = {
    "variance": ("bessel", ("bessel", "biased"), "variance divisor: n-1 (bessel) or n (biased)"),
    "eps": (1e-5, float, "added to the variance before the square root"),
}


def build(variance="bessel", eps=1e-5):
    s = Spec("batchnorm", "BatchNorm1d over the batch (training mode)")
    n, d = s.axes("n d")
    hprebn = s.input("hprebn", (n, d))
    bngain = s.param("bngain", (1, d))
    bnbias = s.param("bnbias", (1, d))
    e = s.option("eps", eps)
    bnmeani = s.let("bnmeani", Sum(n, hprebn) / n)
    bndiff = s.let("bndiff", hprebn - bnmeani)
    bndiff2 = s.let("bndiff2", bndiff**2)
    divisor = n - 1 if variance == "bessel" else n
    bnvar = s.let("bnvar", Sum(n, bndiff2) / divisor, nonnegative=True)
    bnvar_inv = s.let("bnvar_inv", (bnvar + e) ** Rational(-1, 2))
    bnraw = s.let("bnraw", bndiff * bnvar_inv)
    s.output("hpreact", bngain * bnraw + bnbias)
    s.save(bnraw, bnvar_inv, bngain)
    return s

CLASS = "BatchNorm1d"
