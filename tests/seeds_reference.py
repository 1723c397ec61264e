"""The seeds' own forward passes (makemore part 4), written out step by step: the independent
reference the tests and benchmarks compare symbp's generated code with. Written once, here."""

import torch

from symbp.makemore.model import PARAM_NAMES  # only the order of the parameters' names


def seeds_batchnorm(hprebn, bngain, bnbias, bessel=True):
    n = hprebn.shape[0]
    bnmeani = 1 / n * hprebn.sum(0, keepdim=True)
    bndiff = hprebn - bnmeani
    bndiff2 = bndiff**2
    bnvar = 1 / ((n - 1) if bessel else n) * bndiff2.sum(0, keepdim=True)
    bnvar_inv = (bnvar + 1e-5) ** -0.5
    bnraw = bndiff * bnvar_inv
    hpreact = bngain * bnraw + bnbias
    return hpreact, dict(bnmeani=bnmeani, bndiff=bndiff, bndiff2=bndiff2, bnvar=bnvar,
                         bnvar_inv=bnvar_inv, bnraw=bnraw)


def seeds_cross_entropy(logits, Yb):
    n = logits.shape[0]
    logit_maxes = logits.max(1, keepdim=True).values
    norm_logits = logits - logit_maxes
    counts = norm_logits.exp()
    counts_sum = counts.sum(1, keepdims=True)
    counts_sum_inv = counts_sum**-1
    probs = counts * counts_sum_inv
    logprobs = probs.log()
    loss = -logprobs[range(n), Yb].mean()
    return loss, dict(logit_maxes=logit_maxes, norm_logits=norm_logits, counts=counts,
                      counts_sum=counts_sum, counts_sum_inv=counts_sum_inv, probs=probs, logprobs=logprobs)


def seeds_forward(params, Xb, Yb):
    """The seeds' chunked forward pass, written out step by step (exercise 1)."""
    C, W1, b1, W2, b2, bngain, bnbias = (params[k] for k in PARAM_NAMES)
    n = Xb.shape[0]
    embcat = C[Xb].view(n, -1)
    hprebn = embcat @ W1 + b1
    bnmeani = 1 / n * hprebn.sum(0, keepdim=True)
    bndiff = hprebn - bnmeani
    bnvar = 1 / (n - 1) * (bndiff**2).sum(0, keepdim=True)
    bnraw = bndiff * (bnvar + 1e-5) ** -0.5
    h = torch.tanh(bngain * bnraw + bnbias)
    logits = h @ W2 + b2
    norm_logits = logits - logits.max(1, keepdim=True).values
    counts = norm_logits.exp()
    logprobs = (counts * counts.sum(1, keepdim=True) ** -1).log()
    return -logprobs[range(n), Yb].mean()
