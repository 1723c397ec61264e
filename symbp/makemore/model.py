"""The makemore MLP of "becoming a backprop ninja" (Bengio et al. 2003, with BatchNorm).

    C[X] (n, block, n_embd) -> flatten (n, block*n_embd) -> @ W1 + b1 -> BatchNorm1d
        -> tanh -> @ W2 + b2 -> logits (n, vocab) -> cross-entropy, mean over the batch

Parameters are a plain dict in the seeds' order (C, W1, b1, W2, b2, bngain,
bnbias), so that a training step is just a function of that dict and a batch.
``forward`` is the network's one definition. Two steps compute ``(loss,
grads)`` from it: ``AutogradStep`` (the baseline, torch autograd) and the
generated one (``symbp.makemore.generated_step.GeneratedStep``, symbp's own backward,
with no autograd at all). Both must agree; the training loop does not care
which it has, and either can go through ``torch.compile``.

BatchNorm uses Bessel's correction (variance over n-1) in training, as the
seeds do, so a batch needs at least two examples. At inference the mean and
variance come from ``calibrate`` over the whole training set.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from symbp.makemore.data import TERMINATOR, TrainError

#: Added to the BatchNorm variance before the inverse square root, in training and at inference.
BN_EPS = 1e-5
#: The seeds' generator seed, for the initial parameters and the minibatches.
DEFAULT_SEED = 2147483647
PARAM_NAMES = ("C", "W1", "b1", "W2", "b2", "bngain", "bnbias")
BACKWARDS = ("generated", "autograd")
#: Rows per forward pass when evaluating a whole split (about 40 MB of activations at n_hidden 200).
EVAL_CHUNK = 50_000
#: A sampled name stops here even if '.' never comes (an untrained model can ramble forever).
MAX_SAMPLE_LENGTH = 100
#: The ``torch.compile`` backend of ``--compile`` ("inductor" needs a C compiler; tests use "aot_eager").
COMPILE_BACKEND = "inductor"


def init_params(vocab_size: int, block_size: int, n_embd: int = 10, n_hidden: int = 200,
                seed: int = DEFAULT_SEED, dtype=torch.float32, device="cpu", generator=None) -> dict:
    """The seeds' initial parameters, all drawn from one seeded generator in the seeds' order.

    W1 is scaled by the tanh gain over sqrt(fan_in) (Kaiming), and b1, W2, b2
    by 0.1 so that the initial logits are near uniform. The seeds draw bngain
    and bnbias from torch's global generator; here they come from the same
    generator as the rest, so that a seed alone fixes the whole model.
    ``generator`` (instead of ``seed``) lets the caller keep drawing from it
    afterwards, as the seeds' training loop does for its minibatches.
    """
    g = generator if generator is not None else torch.Generator().manual_seed(seed)
    fan_in = n_embd * block_size

    def randn(*shape):
        return torch.randn(shape, generator=g)  # drawn in float32 on the CPU, like the seeds

    params = {
        "C": randn(vocab_size, n_embd),
        "W1": randn(fan_in, n_hidden) * (5 / 3) / fan_in**0.5,
        "b1": randn(n_hidden) * 0.1,
        "W2": randn(n_hidden, vocab_size) * 0.1,
        "b2": randn(vocab_size) * 0.1,
        "bngain": randn(1, n_hidden) * 0.1 + 1.0,
        "bnbias": randn(1, n_hidden) * 0.1,
    }
    return {k: v.to(dtype=dtype, device=device) for k, v in params.items()}


def count_params(params: dict) -> int:
    return sum(p.numel() for p in params.values())


class Activations(NamedTuple):
    """The forward tensors that the generated backward passes read, named as in the layer specs."""

    embcat: torch.Tensor  # (n, block*n_embd) the first linear layer's input
    bnvar_inv: torch.Tensor  # (1, n_hidden) 1/sqrt(var + eps)
    bnraw: torch.Tensor  # (n, n_hidden) the normalised hidden layer
    h: torch.Tensor  # (n, n_hidden) tanh's output, the second linear layer's input


def forward(params: dict, X, stats=None):
    """The MLP from indices to logits: ``(logits (n, vocab), Activations)``.

    The one definition of the network, used by both training steps, the
    evaluation and sampling. BatchNorm uses the batch's mean and Bessel
    variance, or with ``stats`` (``{'bnmean', 'bnvar'}``, from ``calibrate``)
    fixed inference statistics. At batch 32 a step costs about as much per
    torch call as per FLOP, so the lines are fused calls (``addmm``,
    ``addcmul``). The variance is two passes (the mean, then the squared
    deviations from it), as accurate as ``torch.var_mean`` and several times
    faster on the CPU, where ``var_mean`` over dim 0 is a slow strided Welford
    loop. Without autograd (the generated step, evaluation) BatchNorm and
    tanh work in place.
    """
    embcat = params["C"][X].flatten(1)  # (n, block*n_embd)
    hprebn = torch.addmm(params["b1"], embcat, params["W1"])  # (n, n_hidden)
    in_place = not torch.is_grad_enabled()  # autograd needs every intermediate as it was
    bnmean = hprebn.mean(0, keepdim=True) if stats is None else stats["bnmean"]  # (1, n_hidden)
    bndiff = hprebn.sub_(bnmean) if in_place else hprebn - bnmean  # (n, n_hidden)
    if stats is None:
        bnvar = bndiff.square().sum(0, keepdim=True)  # (1, n_hidden) times n-1 so far
        bnvar_inv = (bnvar.mul_(1 / (hprebn.shape[0] - 1)).add_(BN_EPS).rsqrt_() if in_place
                     else torch.rsqrt(bnvar / (hprebn.shape[0] - 1) + BN_EPS))  # (1, n_hidden)
    else:
        bnvar_inv = torch.rsqrt(stats["bnvar"] + BN_EPS)
    if in_place:  # nothing reads hprebn or hpreact again: overwrite them (half the memory, no allocations)
        bnraw = bndiff.mul_(bnvar_inv)
        h = torch.addcmul(params["bnbias"], params["bngain"], bnraw).tanh_()
    else:
        bnraw = bndiff * bnvar_inv  # (n, n_hidden)
        h = torch.tanh(torch.addcmul(params["bnbias"], params["bngain"], bnraw))  # (n, n_hidden)
    logits = torch.addmm(params["b2"], h, params["W2"])  # (n, vocab)
    return logits, Activations(embcat, bnvar_inv, bnraw, h)


def check_batch(Xb) -> None:
    if Xb.shape[0] < 2:
        raise TrainError("BatchNorm with Bessel's correction needs a batch of at least 2 examples")


def loss_of(params: dict, Xb, Yb):
    """The training loss: mean cross-entropy of ``forward`` with batch statistics."""
    return F.cross_entropy(forward(params, Xb)[0], Yb)


@torch.no_grad()
def calibrate(params: dict, X, chunk: int = EVAL_CHUNK) -> dict:
    """BatchNorm's inference statistics: mean and Bessel variance of ``hprebn`` over all of ``X``.

    ``hprebn`` is never built: it is affine in the embeddings (``e @ W1 + b1``
    for each row ``e`` of ``C[X]`` flattened), so its column sums are
    ``s @ W1 + N*b1`` and its column sums of squares come from the embeddings'
    Gram matrix ``G = sum e^T e`` (block*n_embd square, 30 x 30 by default)
    as ``diag(W1^T G W1) + 2*b1*(s @ W1) + N*b1**2``. Everything is float64:
    the variance ``(sum of squares - N*mean**2)/(N - 1)`` has a relative error
    of about 1e-16 * (mean/std)**2, far below float32's rounding for any
    hidden unit whose mean is under 1000 standard deviations; and the work is
    one pass over the narrow embeddings, not two over the hidden layer.
    """
    n = X.shape[0]
    if n < 2:
        raise TrainError("calibrating BatchNorm needs at least 2 training examples")
    C, W1, b1 = (params[k].to(torch.float64) for k in ("C", "W1", "b1"))
    s = torch.zeros(W1.shape[0], dtype=torch.float64, device=W1.device)
    G = torch.zeros(W1.shape[0], W1.shape[0], dtype=torch.float64, device=W1.device)
    for i in range(0, n, chunk):
        emb = C[X[i:i + chunk]].flatten(1)  # (chunk, block*n_embd)
        s += emb.sum(0)
        G += emb.T @ emb
    sW = s @ W1  # (n_hidden,) column sums of hprebn less N*b1
    total = sW + n * b1
    squares = ((G @ W1) * W1).sum(0) + 2 * b1 * sW + n * b1.square()
    mean = total / n
    var = (squares - n * mean.square()).clamp_min(0) / (n - 1)
    dtype = params["W1"].dtype
    return {"bnmean": mean.view(1, -1).to(dtype), "bnvar": var.view(1, -1).to(dtype)}


@torch.no_grad()
def split_loss(params: dict, stats: dict, X, Y, chunk: int = EVAL_CHUNK) -> float:
    """Mean cross-entropy over ``(X, Y)`` with BatchNorm in inference mode (the calibrated stats)."""
    total = 0.0
    for i in range(0, X.shape[0], chunk):
        logits, _ = forward(params, X[i:i + chunk], stats)
        total += F.cross_entropy(logits, Y[i:i + chunk], reduction="sum").item()
    return total / X.shape[0]


@torch.no_grad()
def sample(params: dict, stats: dict, itos, block_size: int, n: int = 20, seed: int = DEFAULT_SEED):
    """``n`` names drawn from the model, one character at a time until '.', reproducibly from ``seed``."""
    g = torch.Generator(device=params["C"].device).manual_seed(seed)
    names = []
    for _ in range(n):
        out, context = [], [0] * block_size
        while len(out) < MAX_SAMPLE_LENGTH:
            X = torch.tensor([context], device=params["C"].device)
            logits, _ = forward(params, X, stats)
            ix = torch.multinomial(F.softmax(logits, dim=1), num_samples=1, generator=g).item()
            if itos[ix] == TERMINATOR:
                break
            out.append(itos[ix])
            context = context[1:] + [ix]
        names.append("".join(out))
    return names
