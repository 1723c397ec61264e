"""The whole MLP step on generated code equals autograd, and uses no autograd at all."""

import ast

import pytest
import torch

from conftest import REPO, rel_err
from symbp.generated_step import GeneratedStep
from symbp.model import AutogradStep, init_params


@pytest.mark.parametrize("batch", [2, 32, 300])
def test_full_step_gradients_equal_autograd_float64(batch):
    g = torch.Generator().manual_seed(batch)
    params = init_params(27, 3, n_embd=10, n_hidden=64, dtype=torch.float64)
    X = torch.randint(0, 27, (batch, 3), generator=g)
    Y = torch.randint(0, 27, (batch,), generator=g)
    loss_a, grads_a = AutogradStep()(params, X, Y)
    loss_g, grads_g = GeneratedStep()(params, X, Y)
    assert abs(loss_a.item() - loss_g.item()) <= 1e-12 * abs(loss_a.item())
    scale = max(v.abs().max().item() for v in grads_a.values())
    for name in params:
        assert grads_g[name].shape == params[name].shape, name
        # b1 feeds BatchNorm, whose mean removes it: its true gradient is zero, so it is
        # judged against the largest gradient of the step rather than its own rounding noise
        floor = scale if name == "b1" else 0.0
        assert rel_err(grads_g[name], grads_a[name], floor) <= 1e-10, name


def test_generated_step_runs_with_autograd_off():
    params = init_params(27, 3, n_hidden=32)
    X = torch.randint(0, 27, (16, 3))
    Y = torch.randint(0, 27, (16,))
    with torch.autograd.set_grad_enabled(False):
        loss, grads = GeneratedStep()(params, X, Y)
    assert not loss.requires_grad and all(not g.requires_grad for g in grads.values())
    assert all(not p.requires_grad for p in params.values())


def test_no_hand_written_gradient_formulas():
    """The step only wires generated modules: no arithmetic of its own, no autograd anywhere."""
    step = ast.parse((REPO / "symbp" / "generated_step.py").read_text())
    assert not [n for n in ast.walk(step) if isinstance(n, ast.BinOp)], "the step computes nothing itself"
    for path in [REPO / "symbp" / "generated_step.py", *sorted((REPO / "generated").glob("*.py"))]:
        tree = ast.parse(path.read_text())
        calls = {n.func.attr for n in ast.walk(tree)
                 if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)}
        assert not calls & {"grad", "backward_hook", "requires_grad_"}, path
        assert "autograd.grad" not in path.read_text(), path
