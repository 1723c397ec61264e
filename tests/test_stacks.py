"""Generated layer classes compose into deep stacks trained without autograd."""

import pytest
import torch

import generated.batchnorm as bn
import generated.cross_entropy as ce
import generated.linear as lin
import generated.tanh as th
from conftest import rel_err


def build_stack(depth_blocks, width, n_in, g):
    layers = [lin.Linear(torch.randn(n_in, width, dtype=torch.float64, generator=g) / n_in**0.5,
                         torch.zeros(width, dtype=torch.float64))]
    layers += [bn.BatchNorm1d(1 + 0.1 * torch.randn(1, width, dtype=torch.float64, generator=g),
                              0.1 * torch.randn(1, width, dtype=torch.float64, generator=g)), th.Tanh()]
    for _ in range(depth_blocks - 1):
        w = torch.randn(width, width, dtype=torch.float64, generator=g) * (5 / 3) / width**0.5
        layers += [lin.Linear(w,
                              0.1 * torch.randn(width, dtype=torch.float64, generator=g)),
                   bn.BatchNorm1d(torch.ones(1, width, dtype=torch.float64),
                                  torch.zeros(1, width, dtype=torch.float64)),
                   th.Tanh()]
    return layers


def reference(layers, x, y):
    """The same stack in plain torch ops, differentiated by autograd."""
    x = x.clone().requires_grad_()
    params = [p.clone().requires_grad_() for layer in layers for p in layer.parameters()]
    it = iter(params)
    h = x
    for layer in layers:
        if isinstance(layer, lin.Linear):
            h = h @ next(it) + next(it)
        elif isinstance(layer, bn.BatchNorm1d):
            gain, bias = next(it), next(it)
            mean = h.mean(0, keepdim=True)
            var = ((h - mean) ** 2).sum(0, keepdim=True) / (h.shape[0] - 1)
            h = gain * (h - mean) / torch.sqrt(var + 1e-5) + bias
        else:
            h = torch.tanh(h)
    loss = torch.nn.functional.cross_entropy(h, y)
    loss.backward()
    return loss, x.grad, params[0].grad


@pytest.mark.parametrize("blocks", [1, 23])
def test_deep_stack_matches_autograd(blocks):
    """23 Linear/BatchNorm1d/Tanh blocks plus the head: 70 layers, all generated code."""
    g = torch.Generator().manual_seed(blocks)
    width, n_in, n = 24, 10, 32
    layers = build_stack(blocks, width, n_in, g)
    head = ce.CrossEntropy()
    x = torch.randn(n, n_in, dtype=torch.float64, generator=g)
    y = torch.randint(0, width, (n,), generator=g)
    with torch.no_grad():
        h = x
        for layer in layers:
            h = layer(h)
        loss = head(h, y)
        grad = head.backward(torch.ones_like(loss))
        for layer in reversed(layers):
            grad = layer.backward(grad)
    ref_loss, ref_dx, ref_dW1 = reference(layers, x, y)
    assert abs(loss.item() - ref_loss.item()) <= 1e-12
    assert rel_err(grad, ref_dx) <= 1e-9
    assert rel_err(layers[0].grads["W"], ref_dW1) <= 1e-9
    assert [p.shape for p in layers[0].parameters()] == [(n_in, width), (width,)]
