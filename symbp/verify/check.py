"""Generated backward vs an independent reference on a random batch: the seeds' ``cmp`` table.

The reference is autograd through ``symbp.verify.reference``, an evaluator of the
spec's bindings that shares no code with the lowering or the generated
module, so a mistake in lowering, in the fused closed form or in the chunked
chain shows up as a mismatch instead of being reproduced by the check. The
module under test is rendered in memory from the current spec, so a check
never depends on what is in ``generated/``.

Tolerances (never ``allclose`` defaults):

* float64: ``|got - ref| <= 1e-10 * scale + 1e-13 * global_scale`` where
  ``scale`` is the largest ``|ref|`` of that tensor and ``global_scale`` the
  largest over every gradient (the floor only matters for gradients that are
  zero in exact arithmetic, such as a max-shift's, whose computed value is
  rounding noise of the larger gradients that cancel into it);
* float32: the arguments are drawn in float32 and the reference is run on
  the same values in float64 (so input rounding is not counted) and again in
  float32. The float32 reference's own error ``e32`` measures how much float32
  rounding in this forward and backward moves this gradient (a per-tensor
  condition estimate found by running it); the bound is
  ``8 * e32 + ops * eps32 * scale`` with ``ops`` the number of SymPy
  operations of the forward plus ``log2`` of the longest reduction.
  Two float32 algorithms for the same quantity differ by a small multiple
  of either one's error, hence the factor 8;
* a NaN or infinity where the float64 reference is finite fails, unless
  the independent float32 reference is also not finite there (float32's
  range, not symbp, is then the limit).
"""

from __future__ import annotations

import math
import types
from dataclasses import dataclass

import sympy as sp
import torch

from symbp.codegen.render import Variant, render_variant
from symbp.layers import load
from symbp.verify.reference import reference_gradients

#: sizes for axes other than the batch axis, in declaration order: distinct, so
#: that a transposed or wrongly broadcast gradient cannot have the right shape
OTHER_SIZES = (7, 5, 6, 4, 3, 9, 8, 10, 11, 12)
RTOL64 = 1e-10
FLOOR64 = 1e-13
EPS32 = float(torch.finfo(torch.float32).eps)


@dataclass
class Row:
    name: str
    exact: bool
    approximate: bool
    maxdiff: float
    tolerance: float = 0.0
    note: str = ""

    def line(self) -> str:
        return (f"{self.name:15s} | exact: {str(self.exact):5s} | approximate: {str(self.approximate):5s} "
                f"| maxdiff: {self.maxdiff:.3g}" + (f"  ({self.note})" if self.note else ""))


def load_generated(layer_ref: str, options=None) -> types.ModuleType:
    """Render a layer's module in memory and import it."""
    lay = load(layer_ref)
    variant = Variant(lay.name, layer_ref, dict(options or {}))
    source = render_variant(variant, layer_ref)[f"{lay.name}.py"]
    module = types.ModuleType(f"symbp_generated_{lay.name}")
    exec(compile(source, f"<generated {lay.name}>", "exec"), module.__dict__)
    module.SPEC = lay.build(**(options or {}))
    return module


def batch_axis(spec):
    """The axis ``--batch`` sets: the one named ``n`` if any, else the first declared."""
    return next((a for a in spec.axis_list if a.name == "n"), spec.axis_list[0] if spec.axis_list else None)


def default_sizes(spec, batch: int = 32) -> dict:
    """``{axis name: size}``: ``batch`` for the batch axis, distinct small sizes for the others."""
    b = batch_axis(spec)
    others = iter(OTHER_SIZES)
    return {a.name: batch if a == b else next(others, 13) for a in spec.axis_list}


def random_arguments(spec, sizes=None, dtype=torch.float64, generator=None, scale=1.0):
    """Random arguments for ``spec``, chosen by role and dims, never by name.

    Classes are integer indices in range; a tensor declared ``positive`` is
    drawn from [0.5, 1.5), ``nonnegative`` from [0, 1); anything else is
    standard normal times ``scale``.
    """
    size = default_sizes(spec)
    size.update({(k.name if isinstance(k, sp.Symbol) else k): v for k, v in (sizes or {}).items()})
    dim = {a: size[a.name] for a in spec.axis_list}
    args = []
    for t in spec.arguments:
        if t.role == "classes":
            shape = [dim[a] for a in t.index_dims]
            args.append(torch.randint(0, dim[t.class_axis], shape, generator=generator))
            continue
        shape = [1 if a == 1 else dim[a] for a in t.dims]
        if t.symbol.is_positive:
            x = 0.5 + torch.rand(shape, dtype=dtype, generator=generator)
        elif t.symbol.is_nonnegative:
            x = torch.rand(shape, dtype=dtype, generator=generator)
        else:
            x = torch.randn(shape, dtype=dtype, generator=generator) * scale
        args.append(x)
    return args


def autograd_reference(module, args, grad_output=None):
    """Autograd through ``module.forward``: gradients of every tensor, keyed 'd' + name.

    Not independent of the lowering (it runs the generated forward); kept for
    tests that compare code paths of one module. ``compare`` uses
    ``symbp.verify.reference`` instead.
    """
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


def forward_ops(spec, sizes: dict) -> float:
    """Operations of the forward plus log2 of the longest reduction: the float32 error budget's length."""
    ops = sum(int(sp.count_ops(b.expr)) + 1 for b in spec.bindings)
    return ops + math.log2(max([2, *sizes.values()]))


def compare(module, args, grad_output=None, options=None) -> list:
    """The seeds' table: every chunked and fused gradient against the independent reference.

    ``options`` are the float options to run the forward with (defaults: the
    spec's). The reference always runs in float64 on the very values the
    module gets (see the module docstring for the tolerances).
    """
    spec = module.SPEC
    options = dict(options or {})
    dtype = next((a.dtype for a in args if a.is_floating_point()), torch.float64)
    if grad_output is None:
        out, _ = module.forward(*[a.detach() for a in args], **options)
        grad_output = torch.randn(out.shape, dtype=dtype) if out.dim() else torch.ones((), dtype=dtype)
    ref, _, _ = reference_gradients(spec, args, grad_output, options, dtype=torch.float64)
    ref32 = None
    if dtype != torch.float64:
        ref32, _, _ = reference_gradients(spec, args, grad_output, options, dtype=dtype)
    sizes = {a.name: s for a, s in _sizes(spec, args).items()}
    ops = forward_ops(spec, sizes)
    biggest = max((_finite_max(v) for v in ref.values()), default=0.0)
    _, ctx = module.forward(*[a.detach() for a in args], **options)
    rows = []
    chunked = module.backward_chunked(ctx, grad_output)
    for name, got in chunked.items():
        rows.append(judge(name, got, ref.get(name), None if ref32 is None else ref32.get(name), biggest, ops))
    fused = tuple(module.backward(ctx, grad_output))
    diff = spec.differentiable
    if len(fused) != len(diff):
        note = f"{len(fused)} gradients for {len(diff)} inputs"
        rows.append(Row("fused", False, False, math.inf, note=note))
    for t, got in zip(diff, fused):
        name = "d" + t.name
        rows.append(judge(f"{name} (fused)", got, ref.get(name),
                          None if ref32 is None else ref32.get(name), biggest, ops))
    for name in ref:
        if name not in chunked and name != "d" + spec.output_tensor.name:
            rows.append(Row(name, False, False, math.inf, note="missing from backward_chunked"))
    return rows


def _sizes(spec, args):
    from symbp.verify.reference import axis_sizes

    return axis_sizes(spec, args)


def _finite_max(v) -> float:
    v = v.detach()
    v = v[torch.isfinite(v)]
    return float(v.abs().max()) if v.numel() else 0.0


def tolerance(want64, want32, biggest, ops) -> float:
    """The allowed max |error| of one gradient (see the module docstring)."""
    scale = _finite_max(want64)
    if want32 is None:
        return RTOL64 * scale + FLOOR64 * biggest
    both = torch.isfinite(want32) & torch.isfinite(want64)
    e32 = float((want32.double() - want64)[both].abs().max()) if both.any() else 0.0
    return 8 * e32 + ops * EPS32 * (scale + 1e-3 * biggest)


def judge(name, got, want64, want32, biggest, ops) -> Row:
    """One row of the table: ``got`` against the float64 reference ``want64``."""
    if want64 is None:
        return Row(name, False, False, math.inf, note="the reference has no such gradient")
    if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(want64.shape):
        shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        return Row(name, False, False, math.inf, note=f"shape {shape}, expected {tuple(want64.shape)}")
    got64 = got.detach().to(torch.float64)
    tol = tolerance(want64, want32, biggest, ops)
    ref_ok = torch.isfinite(want64)
    bad_nonfinite = ref_ok & ~torch.isfinite(got64)
    if want32 is not None:
        bad_nonfinite &= torch.isfinite(want32)
    both = ref_ok & torch.isfinite(got64)
    maxdiff = float((got64 - want64)[both].abs().max()) if both.any() else 0.0
    if bad_nonfinite.any():
        return Row(name, False, False, math.inf, tol,
                   note=f"{int(bad_nonfinite.sum())} non-finite where the reference is finite")
    if want64.numel() and not ref_ok.any():
        return Row(name, False, False, math.inf, tol,
                   note="the reference is not finite anywhere: nothing was checked")
    exact = bool(torch.equal(got64[ref_ok], want64[ref_ok]))
    return Row(name, exact, maxdiff <= tol, maxdiff, tol)
