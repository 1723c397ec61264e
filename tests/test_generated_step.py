"""The whole MLP step on generated code equals autograd, uses no autograd, and compiles as one graph."""

import ast

import pytest
import torch
import torch.nn.functional as F

from conftest import REPO, rel_err
from symbp.makemore import model
from symbp.makemore.generated_step import GeneratedStep, generated_step
from symbp.makemore.model import PARAM_NAMES, init_params
from symbp.makemore.steps import AutogradStep, make_step


def reference_loss(params, X, Y):
    """The MLP written apart from ``makemore.model.forward``: plain ops, ``var``, ``F.cross_entropy``."""
    C, W1, b1, W2, b2, bngain, bnbias = (params[k] for k in PARAM_NAMES)
    hprebn = C[X].reshape(X.shape[0], -1) @ W1 + b1
    bnraw = (hprebn - hprebn.mean(0, keepdim=True)) / torch.sqrt(hprebn.var(0, keepdim=True) + 1e-5)
    return F.cross_entropy(torch.tanh(bngain * bnraw + bnbias) @ W2 + b2, Y)


def reference_step(params, X, Y):
    leaves = {k: p.detach().clone().requires_grad_() for k, p in params.items()}
    loss = reference_loss(leaves, X, Y)
    return loss.detach(), dict(zip(leaves, torch.autograd.grad(loss, list(leaves.values()))))


def batch(n, vocab=27, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (n, 3), generator=g), torch.randint(0, vocab, (n,), generator=g)


def assert_matches_reference(params, X, Y, step=None, tol=1e-10):
    loss_r, grads_r = reference_step(params, X, Y)
    loss_g, grads_g = (step or GeneratedStep())(params, X, Y)
    assert abs(loss_r.item() - loss_g.item()) <= tol * max(1.0, abs(loss_r.item()))
    assert tuple(grads_g) == PARAM_NAMES
    scale = max(v.abs().max().item() for v in grads_r.values())
    for name in PARAM_NAMES:
        assert grads_g[name].shape == params[name].shape, name
        # b1 feeds BatchNorm, whose mean removes it: its true gradient is zero, so it is
        # judged against the largest gradient of the step rather than its own rounding noise
        floor = scale if name == "b1" else 1e-300
        assert rel_err(grads_g[name], grads_r[name], floor) <= tol, name


@pytest.mark.parametrize("n", [2, 32, 300])
def test_full_step_gradients_equal_autograd_float64(n):
    params = init_params(27, 3, n_embd=10, n_hidden=64, dtype=torch.float64, seed=n)
    assert_matches_reference(params, *batch(n, seed=n))


def test_edge_values_float64():
    """Tied logits (uniform softmax), saturated tanh (1 - h**2 = 0), repeated indices, non-contiguous."""
    params = init_params(27, 3, n_embd=4, n_hidden=16, dtype=torch.float64)
    X, Y = batch(16)
    X[:, :] = X[:1, :1]  # every context is the same character: one row of C, emb identical across the batch
    X[0, 0] = 5  # ... but one, so that BatchNorm's variance is not zero
    tied = dict(params, W2=torch.zeros_like(params["W2"]), b2=torch.zeros_like(params["b2"]))
    assert_matches_reference(tied, X, Y)
    saturated = dict(params, bngain=torch.full_like(params["bngain"], 50.0))
    assert_matches_reference(saturated, *batch(16))
    strided = {k: (v.T.contiguous().T if v.dim() == 2 else v) for k, v in params.items()}
    assert not strided["W1"].is_contiguous()
    Xs, Ys = batch(32)
    assert_matches_reference(strided, Xs[::2], Ys[::2])


def test_autograd_step_equals_the_independent_reference():
    params = init_params(27, 3, n_hidden=32, dtype=torch.float64)
    assert_matches_reference(params, *batch(20), step=AutogradStep())


def test_float32_step_is_close_to_autograd():
    params = init_params(27, 3)
    X, Y = batch(32)
    loss_a, grads_a = AutogradStep()(params, X, Y)
    loss_g, grads_g = GeneratedStep()(params, X, Y)
    torch.testing.assert_close(loss_g, loss_a)
    for name in PARAM_NAMES:
        torch.testing.assert_close(grads_g[name], grads_a[name], rtol=1e-4, atol=1e-6, msg=name)


def test_generated_step_runs_with_autograd_off_and_on():
    params = init_params(27, 3, n_hidden=32)
    X, Y = batch(16)
    for enabled in (False, True):
        with torch.autograd.set_grad_enabled(enabled):
            loss, grads = GeneratedStep()(params, X, Y)
        assert not loss.requires_grad and all(not g.requires_grad for g in grads.values())
    assert all(not p.requires_grad for p in params.values())


def test_generated_step_compiles_as_one_graph():
    """fullgraph=True raises on any graph break; aot_eager needs no C compiler."""
    torch._dynamo.reset()
    params = init_params(11, 3, n_embd=4, n_hidden=8, dtype=torch.float64)
    X, Y = batch(6, vocab=11)
    compiled = torch.compile(generated_step, fullgraph=True, backend="aot_eager")
    with torch.no_grad():
        loss, grads = compiled(params, X, Y)
    loss_r, grads_r = reference_step(params, X, Y)
    torch.testing.assert_close(loss, loss_r)
    for name, g in zip(PARAM_NAMES, grads):
        torch.testing.assert_close(g, grads_r[name], msg=name)


@pytest.mark.parametrize("backward", ["generated", "autograd"])
def test_compiled_steps_equal_the_reference(backward, monkeypatch):
    torch._dynamo.reset()
    monkeypatch.setattr(model, "COMPILE_BACKEND", "aot_eager")
    params = init_params(11, 3, n_embd=4, n_hidden=8, dtype=torch.float64)
    assert_matches_reference(params, *batch(6, vocab=11), step=make_step(backward, compile=True))


def test_no_hand_written_gradient_formulas():
    """The step only wires generated modules: no arithmetic of its own, no autograd anywhere."""
    step_file = REPO / "symbp" / "makemore" / "generated_step.py"
    step = ast.parse(step_file.read_text())
    assert not [n for n in ast.walk(step) if isinstance(n, ast.BinOp)], "the step computes nothing itself"
    for path in [step_file, *sorted((REPO / "generated").glob("*.py"))]:
        tree = ast.parse(path.read_text())
        calls = {n.func.attr for n in ast.walk(tree)
                 if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)}
        assert not calls & {"grad", "backward_hook", "requires_grad_"}, path
        assert "autograd.grad" not in path.read_text(), path


@pytest.mark.parametrize("layer, sizes", [("batchnorm", {"n": 6}), ("cross_entropy", {"n": 6}),
                                          ("attention", {"b": 2})])
def test_generated_function_compiles_as_one_graph(layer, sizes):
    """``Function.apply`` inside ``torch.compile(fullgraph=True)``: no graph break, same gradients."""
    import importlib

    from symbp.layers import load
    from symbp.verify.check import random_arguments

    torch._dynamo.reset()
    module = importlib.import_module(f"generated.{layer}")
    args = random_arguments(load(layer).build(), sizes, torch.float64, torch.Generator().manual_seed(0))

    def loss(*a):
        return module.Function.apply(*a).square().sum()

    compiled = [a.clone().requires_grad_(a.is_floating_point()) for a in args]
    torch.compile(loss, fullgraph=True, backend="aot_eager")(*compiled).backward()
    eager = [a.clone().requires_grad_(a.is_floating_point()) for a in args]
    loss(*eager).backward()
    for a, b in zip(compiled, eager):
        if b.grad is not None:
            torch.testing.assert_close(a.grad, b.grad)


@pytest.mark.parametrize("n", [2, 5, 64])
def test_first_bias_gradient_is_zero_as_the_step_assumes(n):
    """The generated step returns ``db1 = 0`` without computing it: BatchNorm's mean removes b1.
    Autograd on the independent forward agrees to rounding, at any batch size and scale."""
    params = init_params(27, 3, n_hidden=48, dtype=torch.float64, seed=n)
    params["b1"] = params["b1"] * 1e3  # a large bias must cancel just as well
    X, Y = batch(n, seed=n)
    _, grads = reference_step(params, X, Y)
    scale = max(v.abs().max().item() for v in grads.values())
    assert grads["b1"].abs().max().item() <= 1e-12 * scale
    _, mine = GeneratedStep()(params, X, Y)
    assert torch.equal(mine["b1"], torch.zeros_like(params["b1"]))
