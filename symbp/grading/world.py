"""Concrete instances of a layer for the exact randomised test, independent of the engine.

A :class:`World` fixes the axis sizes and draws every input as a random rational;
the forward pass is evaluated from the spec's own bindings, entry by entry, and
the true gradient of any tensor comes from forward-mode dual numbers through that
evaluation (``cut`` leaves out one edge or node of the graph, for the diagnoses of
a missing path). No rule of the engine's derivation or simplifier is used, so an
answer that agrees with these gradients in several worlds is right whatever the
engine thinks.
"""

from __future__ import annotations

import itertools
import random
from fractions import Fraction

import sympy as sp

from symbp.grading.exact import UNDEFINED, Dual, add, compiled, mul, real


class World:
    """One concrete instance of a spec: axis sizes, random rationals, the forward values.

    ``gradient(name)`` is the true gradient of the output (contracted with the
    incoming gradient) with respect to tensor ``name``, by dual numbers through
    this evaluation; ``cut`` removes one edge or node from the graph.
    """

    def __init__(self, spec, sizes: dict, seed: int, dout_one: bool, probes: dict | None = None):
        self.spec = spec
        self.size = {a: sizes[a] for a in spec.axis_list}
        rng = random.Random(seed)
        self.values: dict = {}
        pool = rng.sample(range(-400, 400), 800)  # distinct values: no ties for a max
        pool_it = iter(pool)
        self.options = {o.symbol: Fraction(1, rng.randint(3, 12)) for o in spec.options.values()}
        for t in spec.arguments:
            if t.role == "classes":
                ca = self.size[t.class_axis]
                hot = {}
                for idx in self.indices(t.index_dims):
                    k = rng.randrange(ca)
                    for c in range(ca):
                        hot[idx + (c,)] = Fraction(int(c == k))
                self.values[t.name] = hot
            elif probes and t.name in probes:
                self.values[t.name] = _probe_values(probes[t.name], self.indices(t.dims), seed)
            else:
                vals = {}
                for idx in self.indices(t.dims):
                    try:
                        vals[idx] = Fraction(next(pool_it), 37)
                    except StopIteration:
                        vals[idx] = Fraction(rng.randint(-400, 400), 41)
                self.values[t.name] = vals
        out = spec.output_tensor
        self.dout = {idx: (Fraction(1) if dout_one else Fraction(rng.randint(-9, 9) or 1, rng.randint(1, 5)))
                     for idx in self.indices(out.dims)}
        self.adjoint_of = {spec.adjoint(t.name): t.name for t in spec.tensors.values() if t.role != "classes"}
        self.incoming = spec.adjoint(out.name)
        for b in spec.bindings:
            self.values[b.name] = self.compute(b, self.values)
        self._grads: dict = {}
        self._deps = dependents(spec)

    def indices(self, dims):
        axes = _axes(dims)
        return [tuple(p) for p in itertools.product(*(range(self.size[a]) for a in axes))]

    def compute(self, binding, values, cut_edge=None):
        axes = _axes(binding.dims)
        out = {}
        for idx in self.indices(binding.dims):
            out[idx] = self.eval(binding.expr, dict(zip(axes, idx)), values, cut_edge)
        return out

    # -- the evaluator ----------------------------------------------------
    def eval(self, e, env, values=None, cut_edge=None):
        return compiled(e)(self, env, self.values if values is None else values, cut_edge)

    def symbol(self, s, env, values, cut_edge):
        if s in self.size:
            return Fraction(self.size[s])
        if s in self.options:
            return self.options[s]
        if s == self.incoming:
            t = self.spec.output_tensor
            return self.dout[_at(env, t.dims)]
        if s in self.adjoint_of:
            name = self.adjoint_of[s]
            t = self.spec.tensors[name]
            return self.gradient(name)[_at(env, t.dims)]
        t = self.spec.tensor_of(s)
        v = values[t.name][_at(env, t.dims)]
        if cut_edge is not None and t.name == cut_edge:
            return real(v)
        return v

    # -- gradients by forward mode ---------------------------------------
    def gradient(self, name, cut=None) -> dict:
        """``{index: d<out, dout>/d name[index]}``; ``cut`` is None, ``("edge", via)`` or ``("node", v)``."""
        key = (name, cut)
        if key in self._grads:
            return self._grads[key]
        spec = self.spec
        t = spec.tensors[name]
        later = [b for b in spec.bindings if b.name in self._deps[name]]
        out_t = spec.output_tensor
        grad = {}
        for idx in self.indices(t.dims):
            values = dict(self.values)
            values[name] = dict(values[name])
            values[name][idx] = Dual(values[name][idx], Fraction(1))
            for b in later:
                edge = name if cut == ("edge", b.name) else None
                vals = self.compute(b, values, edge)
                if cut == ("node", b.name) or (cut and cut[0] == "nodes" and b.name in cut[1]):
                    vals = {k: real(v) for k, v in vals.items()}
                values[b.name] = vals
            total = Fraction(0)
            for o, v in values[out_t.name].items():
                if isinstance(v, Dual):
                    total = add(total, mul(self.dout[o], v.b))
            grad[idx] = total
        self._grads[key] = grad
        return grad

    def over(self, expr, dims) -> dict:
        """``{index: value}`` of an element expression over ``dims``."""
        axes = _axes(dims)
        return {idx: self.eval(expr, dict(zip(axes, idx))) for idx in self.indices(dims)}


def _axes(dims) -> list:
    return [a for a in dims if a != 1]


def _at(env, dims) -> tuple:
    """The storage index of a tensor with ``dims`` at the element ``env`` (axis -> position)."""
    return tuple(env[a] for a in dims if a != 1)


def dependents(spec) -> dict:
    """Tensor name -> names of the bindings that depend on it (directly or not)."""
    deps = {t: set() for t in spec.tensors}
    for b in spec.bindings:
        direct = {spec.tensor_of(s).name for s in b.expr.free_symbols if spec.is_tensor(s)}
        for t in list(deps):
            if t in direct or deps[t] & direct:
                deps[t].add(b.name)
    return deps


def worlds_for(spec, dout_one: bool, count: int):
    """``count`` worlds of varied axis sizes (2 to 4) and seeds; the batch never 1 (Bessel)."""
    out = []
    for k in range(count):
        rng = random.Random(1000 + k)
        sizes = {a: 2 + (k + i) % 3 if k < 3 else rng.randint(2, 4) for i, a in enumerate(spec.axis_list)}
        out.append(World(spec, sizes, seed=k, dout_one=dout_one))
    return out



def critical_values(spec, *exprs) -> dict:
    """``{argument name: values}`` where the expressions branch on that argument.

    A condition ``x > 1/10``, a ``Heaviside``, ``sign`` or ``Abs`` whose argument
    is linear in one argument tensor (numbers only otherwise) puts its root here:
    random points almost never land between a learner's ``x > 0.1`` and the true
    ``x > 0``, nor exactly on a kink where ``>=`` and ``>`` differ.
    """
    arguments = {t.symbol: t.name for t in spec.arguments if t.role != "classes"}
    out: dict = {}
    for e in exprs:
        kinks = [r.lhs - r.rhs for r in e.atoms(sp.core.relational.Relational)]
        kinks += [f.args[0] for f in e.atoms(sp.Heaviside, sp.sign, sp.Abs)]
        for k in kinks:
            syms = k.free_symbols
            if len(syms) != 1 or next(iter(syms)) not in arguments:
                continue
            s = next(iter(syms))
            try:
                a, b = sp.Poly(k, s).all_coeffs()
            except (sp.PolynomialError, ValueError):  # not a polynomial, or not of degree 1
                continue
            if a.is_Number and b.is_Number and a != 0:
                root = sp.Rational(-b / a)
                out.setdefault(arguments[s], {Fraction(0)}).add(Fraction(int(root.p), int(root.q)))
    return out


def probe_worlds(spec, dout_one: bool, critical: dict) -> list:
    """Worlds whose branching arguments sit on, just beside and between their critical values."""
    worlds = []
    for k in range(3):
        sizes = {a: 2 + (k + i) % 3 for i, a in enumerate(spec.axis_list)}
        try:
            worlds.append(World(spec, sizes, seed=k, dout_one=dout_one, probes=critical))
        except UNDEFINED:  # the forward is undefined there
            continue
    return worlds


def _probe_values(critical, indices, seed: int) -> dict:
    """Each critical value, values a little to either side, midpoints and beyond, in turn; an
    entry past the first round moves by a tiny distinct amount (no ties)."""
    points = sorted(critical)
    gap = min((b - a for a, b in zip(points, points[1:])), default=Fraction(1))
    near = gap / 8
    values = set(points) | {points[0] - 1, points[-1] + 1}
    values |= {(a + b) / 2 for a, b in zip(points, points[1:])}
    values |= {p + d for p in points for d in (near, -near)}
    values = sorted(values)
    tiny = near / (8 * (len(indices) + 1))
    out = {}
    for i, idx in enumerate(indices):
        j = (i + seed) % len(values)
        out[idx] = values[j] + tiny * ((i + seed) // len(values))
    return out
