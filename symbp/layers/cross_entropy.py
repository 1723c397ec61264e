"""Softmax cross-entropy averaged over the batch, in the seeds' chunked form.

The logits are shifted by their row maximum for numerical stability (a path
whose gradient the engine proves to be exactly zero), exponentiated,
normalised into probabilities, and the mean negative log-probability of the
integer targets is the loss.
"""

from sympy import exp, log

from symbp.spec import Max, Spec, Sum

OPTIONS = {}


def build():
    s = Spec("cross_entropy", "softmax cross-entropy with integer targets, mean over the batch")
    n, c = s.axes("n c")
    logits = s.input("logits", (n, c))
    y = s.classes("targets", (n,), c)
    logit_maxes = s.let("logit_maxes", Max(c, logits))
    norm_logits = s.let("norm_logits", logits - logit_maxes)
    counts = s.let("counts", exp(norm_logits))
    counts_sum = s.let("counts_sum", Sum(c, counts))
    counts_sum_inv = s.let("counts_sum_inv", counts_sum**-1)
    probs = s.let("probs", counts * counts_sum_inv)
    logprobs = s.let("logprobs", log(probs))
    s.output("loss", -Sum(n, Sum(c, y * logprobs)) / n)
    s.save(probs, y)
    return s

CLASS = "CrossEntropy"
