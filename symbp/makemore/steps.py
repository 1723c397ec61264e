"""The two training steps, one per ``--backward``: torch autograd, and symbp's generated code.

Both take ``(params, Xb, Yb)`` and return ``(loss, {name: grad})`` on the
one forward in ``model``; ``make_step`` picks one, optionally compiled.
"""

from __future__ import annotations

import torch

from symbp.makemore import model
from symbp.makemore.data import TrainError
from symbp.makemore.model import BACKWARDS, check_batch


class AutogradStep:
    """One training step's loss and gradients by torch autograd: the baseline for the generated step.

    ``step(params, Xb, Yb) -> (loss, {name: grad})``. The parameters
    themselves are left untouched and need no ``requires_grad``; the loss is a
    detached 0-d tensor. With ``compile``, the forward (``loss_of``) goes
    through ``torch.compile`` as a user would compile a model, and AOTAutograd
    compiles its backward.
    """

    name = "autograd"

    def __init__(self, compile: bool = False):
        self.loss_of = (torch.compile(model.loss_of, dynamic=False, backend=model.COMPILE_BACKEND) if compile
                        else model.loss_of)

    def __call__(self, params: dict, Xb, Yb):
        check_batch(Xb)
        leaves = {k: p.detach().requires_grad_() for k, p in params.items()}
        with torch.enable_grad():
            loss = self.loss_of(leaves, Xb, Yb)
            grads = torch.autograd.grad(loss, list(leaves.values()))
        return loss.detach(), dict(zip(leaves, grads))


def make_step(backward: str, compile: bool = False):
    """The training step for ``--backward``: ``'autograd'`` or ``'generated'`` (symbp's own code).

    ``compile`` puts it through ``torch.compile`` (``COMPILE_BACKEND``): the
    forward for autograd, the whole step for the generated backward.
    """
    if backward == "autograd":
        return AutogradStep(compile=compile)
    if backward == "generated":
        try:
            from symbp.makemore.generated_step import GeneratedStep
        except ModuleNotFoundError as e:
            if not (e.name or "").startswith(("generated", "symbp.makemore.generated_step")):
                raise
            raise TrainError("the generated backward is not available in this installation; "
                             "use --backward autograd") from None
        return GeneratedStep(compile=compile)
    raise TrainError(f"unknown backward {backward!r}; choose {' or '.join(BACKWARDS)}")
