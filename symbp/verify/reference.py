"""An independent evaluator of a spec's bindings in torch: the reference every check trusts.

It shares no code with ``symbp.codegen.lower`` or the generated modules. It walks the
SymPy tree of each binding node by node and computes with torch directly, in
a deliberately simple layout: every tensor is held with one dim per axis of
the spec, in ``spec.axis_list`` order, of size one where the tensor does not
vary along that axis. Broadcasting is then always aligned, a reduction is a
``sum``/``amax`` over one fixed dim, and a contraction ``Sum(k, a*b)`` is a
broadcast product followed by a sum: simple and slow, which is the point.

Conventions (the ones torch's own ops have, so autograd of this evaluator is
the reference):

* ``Max(axis, e)`` is ``torch.amax``: its gradient splits evenly among ties;
* a classes tensor is ``F.one_hot`` of its integer indices along its class axis,
  and a product with it selects (``torch.where``), as indexing would, so that
  ``y * log(p)`` is 0, not nan, where ``y`` is 0 and ``p`` underflowed;
* ``Abs`` and ``sign`` have derivative 0 at 0, as ``torch.abs``.

``reference_gradients`` runs autograd through it in float64 and returns the
gradient of every differentiable input and of every intermediate.
"""

from __future__ import annotations

import sympy as sp
import torch
import torch.nn.functional as F

from symbp.functions import sigmoid, softplus
from symbp.spec import Max, Reduction, Sum


class ReferenceError(ValueError):
    """A node the reference evaluator does not know: the check cannot vouch for it."""


def axis_sizes(spec, args, sizes=None) -> dict:
    """``{axis Symbol: size}`` read from the arguments' shapes (``sizes`` fills the rest)."""
    out = {}
    given = {(k.name if isinstance(k, sp.Symbol) else k): v for k, v in (sizes or {}).items()}
    for t, a in zip(spec.arguments, args):
        dims = t.index_dims if t.role == "classes" else t.dims
        if len(dims) != a.dim():
            raise ReferenceError(f"argument {t.name}: expected {len(dims)} dims, got shape {tuple(a.shape)}")
        for d, s in zip(dims, a.shape):
            if d == 1:
                continue
            if d in out and out[d] != s:
                raise ReferenceError(f"argument {t.name}: axis {d} has size {s}, elsewhere {out[d]}")
            out[d] = int(s)
    for axis in spec.axis_list:
        if axis not in out:
            if axis.name in given:
                out[axis] = int(given[axis.name])
            else:  # only a class axis can be unseen: the largest index bounds it
                for t, a in zip(spec.arguments, args):
                    if t.role == "classes" and t.class_axis == axis:
                        out[axis] = max(out.get(axis, 0), int(a.max()) + 1 if a.numel() else 1)
        if axis not in out:
            raise ReferenceError(f"axis {axis} has no size: pass sizes={{'{axis}': ...}}")
    return out


class Layout:
    """Conversions between a tensor's declared dims and the all-axes layout."""

    def __init__(self, spec, sizes: dict):
        self.axes = list(spec.axis_list)
        self.sizes = sizes

    def to_full(self, x: torch.Tensor, dims: tuple) -> torch.Tensor:
        present = [d for d in dims if d != 1]
        x = x.reshape([self.sizes[d] for d in present]) if present else x.reshape(())
        order = sorted(range(len(present)), key=lambda k: self.axes.index(present[k]))
        x = x.permute(order) if present else x
        ordered = [present[k] for k in order]
        return x.reshape([self.sizes[a] if a in ordered else 1 for a in self.axes])

    def from_full(self, x: torch.Tensor, dims: tuple) -> torch.Tensor:
        present = [d for d in dims if d != 1]
        x = x.expand([self.sizes[a] if a in present else 1 for a in self.axes])
        x = x.reshape([self.sizes[a] for a in self.axes if a in present])
        ordered = [a for a in self.axes if a in present]
        x = x.permute([ordered.index(d) for d in present]) if present else x
        return x.reshape([1 if d == 1 else self.sizes[d] for d in dims])


_UNARY = {
    sp.exp: torch.exp,
    sp.log: torch.log,
    sp.tanh: torch.tanh,
    sp.sinh: torch.sinh,
    sp.cosh: torch.cosh,
    sp.sin: torch.sin,
    sp.cos: torch.cos,
    sp.Abs: torch.abs,
    sp.sign: torch.sign,
    sp.erf: torch.erf,
    sp.atan: torch.atan,
    sigmoid: torch.sigmoid,
    softplus: torch.nn.functional.softplus,
}


class Evaluator:
    """Evaluates element expressions of one spec in the all-axes layout."""

    def __init__(self, spec, layout: Layout, env: dict, options: dict, dtype):
        self.spec = spec
        self.layout = layout
        self.env = env  # tensor Symbol -> full-layout tensor
        self.options = options  # option Symbol -> float
        self.dtype = dtype
        self.rank = len(layout.axes)
        self.onehot = {t.symbol for t in spec.tensors.values() if t.role == "classes"}

    def const(self, value) -> torch.Tensor:
        return torch.full([1] * self.rank, float(value), dtype=self.dtype)

    def __call__(self, e) -> torch.Tensor:
        if e in self.env:
            return self.env[e]
        if e in self.options:
            return self.const(self.options[e])
        if e in self.layout.sizes:
            return self.const(self.layout.sizes[e])
        if e.is_Number or e in (sp.pi, sp.E):
            return self.const(sp.Float(e, 30))
        if isinstance(e, Reduction):
            dim = self.layout.axes.index(e.axis)
            body = self(e.body)
            body = body.expand(*[max(s, self.layout.sizes[a] if k == dim else 1)
                                 for k, (s, a) in enumerate(zip(body.shape, self.layout.axes))])
            if isinstance(e, Sum):
                return body.sum(dim, keepdim=True)
            if isinstance(e, Max):
                return body.amax(dim, keepdim=True)
            raise ReferenceError(f"unsupported reduction {type(e).__name__}")
        if isinstance(e, sp.Add):
            out = self(e.args[0])
            for a in e.args[1:]:
                out = out + self(a)
            return out
        if isinstance(e, sp.Mul):
            onehots = [a for a in e.args if a in self.onehot]
            rest = [a for a in e.args if a not in self.onehot]
            out = self(rest[0]) if rest else self.const(1)
            for a in rest[1:]:
                out = out * self(a)
            for y in onehots:  # a one-hot factor selects, as indexing does: 0 * inf is 0, not nan
                mask = self(y) != 0
                out = torch.where(mask, out, torch.zeros((), dtype=self.dtype))
            return out
        if isinstance(e, sp.Pow):
            base = self(e.base)
            if e.exp.is_Integer:
                return base ** int(e.exp)
            if e.exp.is_Number:
                return base ** float(e.exp)
            return base ** self(e.exp)
        for fn, op in _UNARY.items():
            if isinstance(e, fn):
                return op(self(e.args[0]))
        if isinstance(e, (sp.Max, sp.Min)):
            op = torch.maximum if isinstance(e, sp.Max) else torch.minimum
            out = self(e.args[0])
            for a in e.args[1:]:
                out = op(out, self(a))
            return out
        if isinstance(e, sp.Heaviside):
            at_zero = self(e.args[1]) if len(e.args) > 1 else self.const(0.5)
            x = self(e.args[0])
            return torch.heaviside(x.detach(), at_zero.expand_as(x).detach())
        if isinstance(e, sp.Piecewise):
            out = None
            for value, cond in reversed(e.args):
                v = self(value)
                if cond is sp.true:
                    out = v
                else:
                    mask = self.condition(cond)
                    out = torch.where(mask, v, out if out is not None else torch.nan)
            return out
        raise ReferenceError(f"the reference cannot evaluate {type(e).__name__}: {e}")

    def condition(self, c) -> torch.Tensor:
        ops = {sp.StrictGreaterThan: torch.gt, sp.GreaterThan: torch.ge,
               sp.StrictLessThan: torch.lt, sp.LessThan: torch.le}
        for cls, op in ops.items():
            if isinstance(c, cls):
                return op(self(c.lhs).detach(), self(c.rhs).detach())
        if isinstance(c, sp.And):
            return torch.stack(torch.broadcast_tensors(*[self.condition(a) for a in c.args])).all(0)
        if isinstance(c, sp.Or):
            return torch.stack(torch.broadcast_tensors(*[self.condition(a) for a in c.args])).any(0)
        if isinstance(c, sp.Not):
            return ~self.condition(c.args[0])
        if isinstance(c, sp.ITE):  # if a then b else c, as SymPy writes a clamp's conditions
            return torch.where(*(self.condition(a) for a in c.args))
        if c is sp.true or c is sp.false:
            return torch.tensor(c is sp.true)
        if isinstance(c, (sp.Eq, sp.Ne)):
            op = torch.eq if isinstance(c, sp.Eq) else torch.ne
            return op(self(c.lhs).detach(), self(c.rhs).detach())
        raise ReferenceError(f"the reference cannot evaluate the condition {c}")


def option_values(spec, options=None) -> dict:
    """``{option Symbol: value}``: the spec's defaults overridden by ``options`` (by name)."""
    options = dict(options or {})
    return {o.symbol: float(options.get(name, o.default)) for name, o in spec.options.items()}


def evaluate(spec, args, options=None, sizes=None, dtype=torch.float64, keep=None) -> dict:
    """Every tensor of ``spec`` (arguments included, classes as one-hot) in its declared dims.

    ``args`` are the generated forward's positional arguments. Float arguments
    are converted to ``dtype``. ``keep`` (a dict) receives the tensors that
    autograd can reach, before they are re-laid-out, keyed by name.
    """
    sz = axis_sizes(spec, args, sizes)
    layout = Layout(spec, sz)
    env, out = {}, {}
    for t, a in zip(spec.arguments, args):
        if t.role == "classes":
            value = F.one_hot(a.long(), sz[t.class_axis]).to(dtype)
        else:
            value = a.to(dtype) if a.dtype != dtype else a
        out[t.name] = value
        env[t.symbol] = layout.to_full(value, t.dims)
    ev = Evaluator(spec, layout, env, option_values(spec, options), dtype)
    for b in spec.bindings:
        full = ev(b.expr)
        declared = layout.from_full(full, b.dims).clone()
        out[b.name] = declared
        if keep is not None:
            keep[b.name] = declared
        env[b.symbol] = layout.to_full(declared, b.dims)
    return out


def reference_forward(spec, args, options=None, sizes=None, dtype=torch.float64) -> torch.Tensor:
    """The output of ``spec`` on ``args``, evaluated independently of symbp's lowering."""
    return evaluate(spec, args, options, sizes, dtype)[spec.output_tensor.name]


def reference_gradients(spec, args, grad_output=None, options=None, sizes=None,
                        dtype=torch.float64) -> tuple:
    """``({'d' + name: gradient}, grad_output, values)`` by autograd through the evaluator.

    Gradients of every differentiable input (zeros where the output does not
    depend on it) and of every intermediate the output depends on, each in
    its declared dims and in ``dtype`` (float64 unless asked otherwise).
    """
    leaves = []
    for t, a in zip(spec.arguments, args):
        if t.role == "classes":
            leaves.append(a)
        else:
            leaves.append(a.detach().to(dtype).clone().requires_grad_(True))
    kept: dict = {}
    with torch.enable_grad():
        values = evaluate(spec, leaves, options, sizes, dtype, keep=kept)
        for v in kept.values():
            if v.requires_grad:
                v.retain_grad()
        out = values[spec.output_tensor.name]
        if grad_output is None:
            grad_output = torch.randn_like(out) if out.dim() else torch.ones_like(out)
        if out.requires_grad:
            out.backward(grad_output.to(dtype))
    grads = {}
    for t, leaf in zip(spec.arguments, leaves):
        if t.differentiable:
            grads["d" + t.name] = leaf.grad if leaf.grad is not None else torch.zeros_like(leaf)
    for name, v in kept.items():
        if name == spec.output_tensor.name:
            grads["d" + name] = grad_output.to(dtype)
        elif v.grad is not None:
            grads["d" + name] = v.grad
    return grads, grad_output, {k: v.detach() for k, v in values.items()}
