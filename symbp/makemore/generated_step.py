"""One training step of the makemore MLP with symbp's generated backward: no autograd.

The forward is the model's one definition (``symbp.makemore.model.forward``, the same
for both backwards), run without autograd; it returns the tensors the
generated backward passes read, named as in the layer specs (``bnraw``,
``bnvar_inv``, ``h``, ...). Every gradient then comes from a module in
``generated/``, derived by symbp from the layer specs: this file only hands
each generated ``backward`` its saved tensors and runs them in reverse order.
The one gradient not computed is ``db1``: it is exactly zero (BatchNorm
removes the first layer's bias). The two non-generated operations are
changes of shape (``view`` between the embedding's (n, block, n_embd) and
the first linear layer's (n, block*n_embd)), and the cross-entropy's saved
``probs``, a forward quantity.

Nothing in the step syncs with the host or branches on tensor values, so it
compiles as one graph (``torch.compile(fullgraph=True)``).
"""

from __future__ import annotations

import torch

import generated.batchnorm as batchnorm
import generated.cross_entropy as cross_entropy
import generated.embedding as embedding
import generated.linear as linear
import generated.tanh as tanh
from symbp.makemore import model
from symbp.makemore.model import PARAM_NAMES, check_batch


def generated_step(params: dict, Xb, Yb):
    """``(loss, gradients in PARAM_NAMES order)`` of one minibatch, on generated backward passes."""
    n = Xb.shape[0]
    C, W1, W2 = params["C"], params["W1"], params["W2"]
    logits, (embcat, bnvar_inv, bnraw, h) = model.forward(params, Xb)
    loss = torch.nn.functional.cross_entropy(logits, Yb)
    probs = torch.softmax(logits, 1)  # (n, vocab) the binding the fused backward reads
    del logits
    # d loss / d loss = 1: a Python number, so no tensor of ones and no multiplication by it
    (dlogits,) = cross_entropy.backward({"n": n, "targets": Yb, "probs": probs}, 1.0)
    del probs
    dh, dW2, db2 = linear.backward({"x": h, "W": W2}, dlogits)
    del dlogits
    # dh and dhpreact are this step's own: each backward may compute its result in them (donate)
    (dhpreact,) = tanh.backward({"h": h}, dh, donate=True)  # dh*(1 - h**2)
    del h, dh
    dhprebn, dbngain, dbnbias = batchnorm.backward(
        {"n": n, "bngain": params["bngain"], "bnvar_inv": bnvar_inv, "bnraw": bnraw}, dhpreact, donate=True)
    del bnraw, dhpreact
    # db1 is zero, not computed: BatchNorm subtracts the batch mean, so a bias added before it
    # cancels out of the loss (symbp's whole-network derivation proves db1 = 0; see
    # benchmarks/whole_network.py, and the tests check it against autograd)
    dembcat, dW1, _ = linear.backward({"x": embcat, "W": W1}, dhprebn, needs=(True, True, False))
    db1 = torch.zeros_like(params["b1"])
    del embcat, dhprebn
    (dC,) = embedding.backward({"v": C.shape[0], "e": C.shape[1], "X": Xb}, dembcat.view(*Xb.shape, -1))
    return loss, (dC, dW1, db1, dW2, db2, dbngain, dbnbias)


class GeneratedStep:
    """``step(params, Xb, Yb) -> (loss, {name: grad})`` with symbp's generated backward.

    With ``compile``, the whole step goes through ``torch.compile(fullgraph=True)``
    (backend ``symbp.makemore.model.COMPILE_BACKEND``).
    """

    name = "generated"

    def __init__(self, compile: bool = False):
        self.step = generated_step
        if compile:
            self.step = torch.compile(generated_step, fullgraph=True, dynamic=False,
                                      backend=model.COMPILE_BACKEND)

    def __call__(self, params: dict, Xb, Yb):
        check_batch(Xb)
        # inference mode, not just no_grad: no version counters or view tracking on any op
        # (a few percent at batch 32); the parameters are only read, and the gradients it
        # returns still feed the optimiser's in-place update
        with torch.inference_mode():
            loss, grads = self.step(params, Xb, Yb)
        return loss, dict(zip(PARAM_NAMES, grads))
