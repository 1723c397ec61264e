"""Generated backward vs torch autograd on a random batch: the seeds' ``cmp`` table.

The reference is autograd through the generated forward (every intermediate
with ``retain_grad``), so any layer, built-in or a user's spec file, can be
checked the same way. The module under test is rendered in memory from the
current spec, so a check never depends on what is in ``generated/``.
"""

from __future__ import annotations

import types
from dataclasses import dataclass

import torch

from symbp.layers import load
from symbp.render import Variant, render_variant

DEFAULT_SIZES = {"n": 32, "c": 27, "v": 27, "t": 3, "e": 10, "i": 30, "o": 64, "d": 64}


@dataclass
class Row:
    name: str
    exact: bool
    approximate: bool
    maxdiff: float

    def line(self) -> str:
        return (f"{self.name:15s} | exact: {str(self.exact):5s} | approximate: {str(self.approximate):5s} "
                f"| maxdiff: {self.maxdiff:.3g}")


def load_generated(layer_ref: str, options=None) -> types.ModuleType:
    """Render a layer's module in memory and import it."""
    lay = load(layer_ref)
    variant = Variant(lay.name, layer_ref, dict(options or {}))
    source = render_variant(variant, layer_ref)[f"{lay.name}.py"]
    module = types.ModuleType(f"symbp_generated_{lay.name}")
    exec(compile(source, f"<generated {lay.name}>", "exec"), module.__dict__)
    module.SPEC = lay.build(**(options or {}))
    return module


def random_arguments(spec, sizes=None, dtype=torch.float64, generator=None, scale=1.0):
    """Random inputs for every argument of ``spec`` (gains near one, classes in range)."""
    size = dict(DEFAULT_SIZES)
    size.update(sizes or {})
    dim = {a: size.get(a.name, 16) for a in spec.axis_list}
    args = []
    for t in spec.arguments:
        if t.role == "classes":
            shape = [dim[a] for a in t.index_dims]
            args.append(torch.randint(0, dim[t.class_axis], shape, generator=generator))
        else:
            shape = [1 if a == 1 else dim[a] for a in t.dims]
            x = torch.randn(shape, dtype=dtype, generator=generator) * scale
            if t.role == "param" and "gain" in t.name:
                x = 1 + 0.1 * x
            args.append(x)
    return args


def autograd_reference(module, args, grad_output=None):
    """Autograd through ``module.forward``: gradients of every tensor, keyed 'd' + name."""
    leaves = [a.detach().clone().requires_grad_(a.is_floating_point()) for a in args]
    out, ctx = module.forward(*leaves)
    for v in ctx.values():
        if isinstance(v, torch.Tensor) and v.requires_grad and not v.is_leaf:
            v.retain_grad()
    if grad_output is None:
        grad_output = torch.randn_like(out) if out.dim() else torch.ones_like(out)
    out.backward(grad_output)
    grads = {"d" + k: v.grad for k, v in ctx.items() if isinstance(v, torch.Tensor) and v.grad is not None}
    return grads, grad_output


def compare(module, args, grad_output=None) -> list:
    """The seeds' table: chunked and fused gradients against autograd.

    ``approximate`` is ``torch.allclose`` with its default rtol and an atol
    scaled to the largest gradient of the backward pass (1e-6 of it in
    float32, 1e-12 in float64), so entries near zero, and gradients that are
    zero in exact arithmetic (a max-shift's), are judged by float rounding
    rather than by an absolute 1e-8 tuned to one problem's scale.
    """
    ref, dout = autograd_reference(module, args, grad_output)
    _, ctx = module.forward(*[a.detach() for a in args])
    biggest = max((float(v.abs().max()) for v in ref.values() if v.numel()), default=0.0)
    rows = []
    chunked = module.backward_chunked(ctx, dout)
    for name, got in chunked.items():
        rows.append(_row(name, got, ref.get(name), biggest))
    fused = module.backward(ctx, dout)
    spec = module.SPEC
    for t, got in zip(spec.differentiable, fused):
        rows.append(_row(f"d{t.name} (fused)", got, ref.get("d" + t.name), biggest))
    return rows


def _row(name, got, want, biggest) -> Row:
    if want is None or got.shape != want.shape:
        return Row(name, False, False, float("inf"))
    diff = (got - want).abs()
    atol = 1e-8 + (1e-6 if want.dtype == torch.float32 else 1e-12) * biggest
    return Row(name, bool(torch.equal(got, want)), bool(torch.allclose(got, want, atol=atol)),
               float(diff.max()) if diff.numel() else 0.0)
