"""Torch operations in each generated fused backward, next to a careful hand-written formula.

Counts every torch call (operators, methods, functions) made while the
backward runs, with a ``TorchFunctionMode``, so shapes and Python scalars do
not count and only real tensor work does. The hand-written references are
the formulas a careful person writes (the seeds' one-liners for BatchNorm and
cross-entropy, the textbook forms for the rest); symbp should match or beat
each one.

    python benchmarks/op_count.py
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from symbp.codegen.render import variants
from symbp.verify.check import load_generated, random_arguments


class CountOps(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") not in ("__get__", "shape", "size", "dim", "dtype", "device"):
            self.count += 1
        return func(*args, **(kwargs or {}))


def _s(x, d):
    return x.sum(d, keepdim=True)


# careful hand-written fused backwards: (ctx, dout) -> gradients, reading the same saved tensors
REFERENCE = {
    "batchnorm": lambda c, dy: _batchnorm(c, dy, c["n"] / (c["n"] - 1)),
    "batchnorm_biased": lambda c, dy: _batchnorm(c, dy, 1),
    "cross_entropy": lambda c, dl: (
        (c["probs"] - F.one_hot(c["targets"], c["probs"].shape[1]).to(c["probs"].dtype)) * (dl / c["n"]),),
    "linear": lambda c, dy: (dy @ c["W"].T, c["x"].T @ dy, dy.sum(0)),
    "linear_seq": lambda c, dy: (dy @ c["W"].T, c["x"].flatten(0, 1).T @ dy.flatten(0, 1), dy.sum((0, 1))),
    "tanh": lambda c, dh: (dh * (1 - c["h"] ** 2),),
    "embedding": lambda c, de: (torch.zeros_like(c["C"]).index_add_(0, c["X"].reshape(-1),
                                                                   de.reshape(-1, de.shape[-1])),),
    "layernorm": lambda c, dy: (
        c["rstd"] / c["d"] * (c["d"] * dy * c["gain"] - _s(dy * c["gain"], 1)
                              - c["xhat"] * _s(dy * c["gain"] * c["xhat"], 1)),
        (dy * c["xhat"]).sum(0, keepdim=True), dy.sum(0, keepdim=True)),
    "rmsnorm": lambda c, dy: (
        c["rrms"] * (dy * c["gain"] - c["xhat"] * _s(dy * c["gain"] * c["xhat"], 1) / c["d"]),
        (dy * c["xhat"]).sum(0, keepdim=True)),
    "mse": lambda c, dl: ((2 / (c["n"] * c["d"])) * dl * c["diff"],
                          (-2 / (c["n"] * c["d"])) * dl * c["diff"]),
    "softmax": lambda c, dp: (c["probs"] * (dp - _s(dp * c["probs"], 1)),),
    "log_softmax": lambda c, dy: (dy - c["counts"] / c["sumexp"] * _s(dy, 1),),
    "logsumexp": lambda c, dy: (dy * c["counts"] / c["sumexp"],),
    "relu": lambda c, dy: (dy * (c["x"] > 0),),
    "sigmoid": lambda c, dy: (dy * c["y"] * (1 - c["y"]),),
    "silu": lambda c, dy: (dy * c["sig"] * (1 + c["x"] * (1 - c["sig"])),),
    "gelu": lambda c, dy: (dy * (c["cdf"] + c["x"] * torch.exp(-0.5 * c["x"] ** 2)
                                 / math.sqrt(2 * math.pi)),),
    "gelu_tanh": lambda c, dy: (dy * (0.5 * (1 + c["th"]) + 0.5 * c["x"] * (1 - c["th"] ** 2)
                                      * math.sqrt(2 / math.pi) * (1 + 3 * 0.044715 * c["x"] ** 2)),),
    "bce_with_logits": lambda c, dl: ((torch.sigmoid(c["z"]) - c["t"]) * (dl / (c["n"] * c["d"])),),
    "huber": lambda c, dl: _huber(c, dl),
    "dropout": lambda c, dy: (dy * c["mask"] / (1 - c["p"]),),
    "l2_normalize": lambda c, dy: ((dy - c["y"] * _s(dy * c["y"], 1)) * c["rnorm"],),
    "attention": lambda c, dy: _attention(c, dy),
    "attention_additive": lambda c, dy: _attention(c, dy),
}


def _batchnorm(c, dy, bessel):
    n, raw = c["n"], c["bnraw"]
    dgain = _s(dy * raw, 0)
    dbias = _s(dy, 0)
    return c["bngain"] * c["bnvar_inv"] / n * (n * dy - dbias - bessel * raw * dgain), dgain, dbias


def _huber(c, dl):
    r, delta = c["r"], c["delta"]
    g = torch.where(r.abs() <= delta, r, delta * r.sign()) * (dl / (c["n"] * c["d"]))
    return g, -g


def _attention(c, dy):
    p, q, k, v = c["probs"], c["q"], c["k"], c["v"]
    dp = dy @ v.mT
    ds = p * (dp - _s(p * dp, 2)) / math.sqrt(q.shape[-1])
    return ds @ k, ds.mT @ q, p.mT @ dy


def count(fn, *args) -> int:
    with CountOps() as mode:
        fn(*args)
    return mode.count


def main() -> int:
    rows = []
    for name in _layer_names():
        for v in variants(name):
            module = load_generated(v.layer, v.options)
            args = random_arguments(module.SPEC, {"n": 8}, torch.float64, torch.Generator().manual_seed(0))
            out, ctx = module.forward(*args, chunked=False)
            dout = torch.ones_like(out)
            ours = count(module.backward, ctx, dout)
            ref = REFERENCE.get(v.module)
            theirs = None
            if ref is not None:
                _, full = module.forward(*args)
                theirs = count(ref, full, dout)
            rows.append((v.module, ours, theirs))
    width = max(len(r[0]) for r in rows)
    print(f"{'layer'.ljust(width)}  symbp  hand-written")
    worse = []
    for name, ours, theirs in rows:
        mark = "" if theirs is None or ours <= theirs else "  (more than the reference)"
        print(f"{name.ljust(width)}  {ours:5d}  {'-' if theirs is None else theirs:>12}{mark}")
        if mark:
            worse.append(name)
    print(f"{len(rows) - len(worse)} of {len(rows)} layers at or below the hand-written op count")
    return 0


def _layer_names():
    from symbp.layers import builtin_names

    return builtin_names()


if __name__ == "__main__":
    raise SystemExit(main())
