"""One training step of the makemore MLP on generated code alone: no autograd.

Every gradient comes from a module in ``generated/``, derived by symbp from
the layer specs; this file only wires the layers in the seeds' order and runs
their backward passes in reverse. The one non-generated operation is the
``view`` between the embedding's (n, block, n_embd) and the first linear
layer's (n, block*n_embd): a change of shape, whose backward is the inverse
change of shape.
"""

from __future__ import annotations

import torch

import generated.batchnorm as batchnorm
import generated.cross_entropy as cross_entropy
import generated.embedding as embedding
import generated.linear as linear
import generated.tanh as tanh
from symbp.data import TrainError
from symbp.model import BN_EPS


class GeneratedStep:
    """``step(params, Xb, Yb) -> (loss, {name: grad})`` with symbp's generated backward."""

    name = "generated"

    @torch.no_grad()
    def __call__(self, params: dict, Xb, Yb):
        if Xb.shape[0] < 2:
            raise TrainError("BatchNorm with Bessel's correction needs a batch of at least 2 examples")
        p = params
        # chunked=False: each layer keeps only what its fused backward reads, and each
        # activation is dropped as soon as no later step needs it, as autograd's graph does
        emb, emb_ctx = embedding.forward(p["C"], Xb, chunked=False)  # (n, block, n_embd)
        emb_shape = emb.shape
        hprebn, l1_ctx = linear.forward(emb.view(emb_shape[0], -1), p["W1"], p["b1"], chunked=False)
        del emb
        hpreact, bn_ctx = batchnorm.forward(hprebn, p["bngain"], p["bnbias"], eps=BN_EPS, chunked=False)
        del hprebn
        h, tanh_ctx = tanh.forward(hpreact, chunked=False)
        del hpreact
        logits, l2_ctx = linear.forward(h, p["W2"], p["b2"], chunked=False)  # (n, vocab)
        del h
        loss, ce_ctx = cross_entropy.forward(logits, Yb, chunked=False)
        del logits

        (dlogits,) = cross_entropy.backward(ce_ctx, torch.ones_like(loss))
        del ce_ctx
        dh, dW2, db2 = linear.backward(l2_ctx, dlogits)
        del l2_ctx, dlogits
        (dhpreact,) = tanh.backward(tanh_ctx, dh)
        del tanh_ctx, dh
        dhprebn, dbngain, dbnbias = batchnorm.backward(bn_ctx, dhpreact)
        del bn_ctx, dhpreact
        dembcat, dW1, db1 = linear.backward(l1_ctx, dhprebn)
        del l1_ctx, dhprebn
        (dC,) = embedding.backward(emb_ctx, dembcat.view(emb_shape))
        grads = {"C": dC, "W1": dW1, "b1": db1, "W2": dW2, "b2": db2, "bngain": dbngain, "bnbias": dbnbias}
        return loss, grads
