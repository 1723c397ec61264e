"""Notes on right answers that may still fail in practice: overflow and float32 precision.

A right answer may get a note (a raw ``exp`` that overflows, a form much less accurate
in float32 than the derived one), never a different verdict: exact arithmetic decides
the grade, these checks only warn. :class:`FloatWorld` is the forward pass in floating
point at realistic sizes, used for nothing else.
"""

from __future__ import annotations

import sympy as sp

from symbp.spec import ArgmaxMask, Max, SpecError, Sum


def precision_notes(spec, value) -> list:
    """Right in exact arithmetic is not always right in float32: say where it may not be."""
    notes = []
    for node in sp.preorder_traversal(value):
        if isinstance(node, sp.exp) and not node.has(Max):
            raw = sorted(s.name for s in node.free_symbols
                         if spec.is_tensor(s) and spec.tensor_of(s).differentiable)
            if raw:
                arg = sp.sstr(node.args[0])
                notes.append(f"exp({arg}) is not shifted by its maximum: equal in exact arithmetic, "
                             f"but it overflows in float32 once {raw[0]} passes about 88 "
                             f"(F.softmax or the forward's own tensors are safe)")
                break
    return notes


def float32_notes(spec, mine, derived, dout_one) -> list:
    """Right in exact arithmetic, but much less accurate than the derived form in float32?

    Both are evaluated in float32 at a realistic size (batch 32, unit normal inputs) and
    compared with the derived form in float64; a note, never a verdict.
    """
    try:
        import numpy as np

        f64 = FloatWorld(spec, np.float64, dout_one)
        f32 = FloatWorld(spec, np.float32, dout_one, like=f64)
        ref = f64.eval(derived)
        scale = float(np.abs(ref).max()) or 1.0
        err_mine = float(np.abs(f32.eval(mine).astype(np.float64) - ref).max()) / scale
        err_derived = float(np.abs(f32.eval(derived).astype(np.float64) - ref).max()) / scale
    except Exception:  # an expression this float evaluator does not know: no note
        return []
    if err_mine > 1e-4 and err_mine > 100 * err_derived:
        return [f"in float32 yours is off by {err_mine:.1g} of the gradient's scale, the derived form "
                f"by {err_derived:.1g} (batch 32, unit normal inputs): it loses precision"]
    return []


class FloatWorld:
    """The forward pass in floating point at realistic sizes, for precision notes only.

    Every value is an array over all the spec's axes (size one where it does not vary),
    so broadcasting is numpy's own and a ``Sum`` is a sum over one array axis.
    """

    SIZES = {"n": 32, "c": 27, "v": 27, "d": 64, "i": 30, "o": 64, "t": 3, "e": 10}

    def __init__(self, spec, dtype, dout_one, like=None):
        import numpy as np

        self.np, self.dtype, self.spec = np, dtype, spec
        self.axes = list(spec.axis_list)
        self.size = {a: self.SIZES.get(a.name, 16) for a in self.axes}
        self.options = {o.symbol: o.default for o in spec.options.values()}
        self.values = {}
        rng = np.random.default_rng(0)
        for t in spec.arguments:
            if like is not None:
                self.values[t.name] = like.values[t.name].astype(dtype)
                continue
            shape = self.shape_of(t.dims)
            if t.role == "classes":
                k = t.class_axis
                hot = rng.integers(0, self.size[k], size=self.shape_of(t.index_dims))
                classes = np.arange(self.size[k]).reshape(self.shape_of((k,)))
                self.values[t.name] = (classes == hot).astype(dtype)
            else:
                x = rng.standard_normal(shape)
                self.values[t.name] = (1 + 0.1 * x if "gain" in t.name else x).astype(dtype)
        out = spec.output_tensor
        if like is not None:
            self.dout = like.dout.astype(dtype)
        else:
            shape = self.shape_of(out.dims)
            self.dout = np.ones(shape, dtype) if dout_one else rng.standard_normal(shape).astype(dtype)
        self.incoming = spec.adjoint(out.name)
        for b in spec.bindings:
            self.values[b.name] = self.eval(b.expr)

    def shape_of(self, dims):
        present = {a for a in dims if a != 1}
        return tuple(self.size[a] if a in present else 1 for a in self.axes)

    def eval(self, e):
        np = self.np
        if e.is_Number:
            return np.asarray(float(e), self.dtype)
        if e.is_Symbol:
            if e in self.size:
                return np.asarray(self.size[e], self.dtype)
            if e in self.options:
                return np.asarray(self.options[e], self.dtype)
            if e == self.incoming:
                return self.dout
            return self.values[self.spec.tensor_of(e).name]
        if isinstance(e, sp.Add):
            return sum((self.eval(a) for a in e.args[1:]), self.eval(e.args[0]))
        if isinstance(e, sp.Mul):
            out = self.eval(e.args[0])
            for a in e.args[1:]:
                out = out * self.eval(a)
            return out
        if isinstance(e, sp.Pow):
            return np.power(self.eval(e.base), self.dtype(float(e.exp)))
        funcs = {sp.exp: np.exp, sp.log: np.log, sp.tanh: np.tanh, sp.Abs: np.abs}
        if type(e) in funcs:
            return funcs[type(e)](self.eval(e.args[0]))
        if isinstance(e, (Sum, Max, ArgmaxMask)):
            k = self.axes.index(e.axis)
            body = self.eval(e.body)
            if isinstance(e, Sum):
                if body.ndim == 0 or body.shape[k] == 1:
                    return body * self.dtype(self.size[e.axis])
                return body.sum(axis=k, keepdims=True)
            top = body.max(axis=k, keepdims=True)
            return top if isinstance(e, Max) else (body == top).astype(self.dtype)
        raise SpecError(f"no float evaluation for {type(e).__name__}")
