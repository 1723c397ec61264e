"""Reverse mode over a spec: the gradient of every intermediate (chunked backward).

(The derive stage; named ``reverse`` so that ``symbp.derive`` stays the public function.)

Bindings are walked from the output back to the inputs. For a binding
``c = f(p, q, Sum(k, g(p)))`` each reduction is replaced by a placeholder,
``sympy.diff`` gives the local partials, and

* ``dp += dc * df/dp``, summed over the axes ``p`` lacks (the adjoint of a
  broadcast is a sum);
* the placeholder's adjoint ``dS = dc * df/dS`` (summed the same way) flows
  into the reduction's operand: ``dp += dS * dg/dp`` for a ``Sum`` (the
  adjoint of a sum is a broadcast) and ``dp += dS * argmax_mask * dg/dp`` for
  a ``Max``.

Each gradient is kept as a list of contributions, one per consuming binding,
written in terms of the consumers' adjoint symbols (``d`` + name), exactly the
statements of the seeds' exercise 1. Each also records its term as the chain
rule writes it, before linearity, and its local partial: what the teaching
views print.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from symbp.engine.algebra import reduce_over
from symbp.functions import drop_deltas
from symbp.spec import ArgmaxMask, Max, Reduction, Spec, SpecError, Sum


def grad_name(name: str) -> str:
    """The one naming rule: ``dx`` is the gradient of ``x`` (also in ``Spec.adjoint``)."""
    return "d" + name


@dataclass
class Contribution:
    """One term of a gradient: what flows into ``target`` through ``via``.

    ``raw`` is the same term as the chain rule gives it, before linearity: the adjoint times
    the local partial, summed over the axes it is broadcast along. ``partial`` is the local
    partial of ``via`` with respect to one element of ``target`` along this term (through
    reductions too), or None where a reduction's partial had to be summed over an axis first.
    """

    target: str
    via: str
    expr: sp.Expr
    raw: sp.Expr = None
    partial: sp.Expr = None


@dataclass
class Chunked:
    """The chunked backward: per tensor, its adjoint symbol and contributions."""

    spec: Spec
    adjoints: dict  # tensor name -> adjoint Symbol
    contributions: dict = field(default_factory=dict)  # tensor name -> [Contribution]
    order: list = field(default_factory=list)  # backward order of tensor names

    def gradient(self, name) -> sp.Expr:
        return sp.Add(*[c.expr for c in self.contributions.get(name, [])])

    def statements(self):
        """``(name, expr)`` in backward order, from the output's first consumer to the inputs."""
        return [(n, self.gradient(n)) for n in self.order]


def derive_chunked(spec: Spec) -> Chunked:
    out = spec.output_tensor
    if out is None:
        raise SpecError(f"spec {spec.name!r} has no output binding")
    if not spec.differentiable:
        raise SpecError(f"spec {spec.name!r} has no input or parameter, so nothing to differentiate "
                        "(declare one with s.input or s.param; data and classes get no gradient)")
    for name in (out.name,) + tuple(t.name for t in spec.tensors.values()):
        if grad_name(name) in spec.tensors:
            raise SpecError(f"binding {grad_name(name)!r}: name clashes with the gradient of {name!r}")
    adjoints = {t.name: spec.adjoint(t.name) for t in spec.tensors.values()
                if t.role != "classes"}
    ch = Chunked(spec, adjoints)
    needs = _needs_gradient(spec)
    for b in reversed(spec.bindings):
        if not needs[b.name]:
            continue
        if b.role != "output":
            if not ch.contributions.get(b.name):
                continue  # nothing downstream depends on it
            ch.order.append(b.name)
        _backprop(spec, b.expr, adjoints[b.name], b.name, ch, needs)
    for t in spec.differentiable:
        if ch.contributions.get(t.name):
            ch.order.append(t.name)
    return ch


def _needs_gradient(spec: Spec) -> dict:
    """Which tensors depend on a differentiable input (the rest get no gradient)."""
    needs = {}
    for t in spec.tensors.values():
        if t.role in ("input", "param"):
            needs[t.name] = True
        elif t.role in ("classes", "data"):
            needs[t.name] = False
        else:
            needs[t.name] = any(needs.get(spec.tensor_of(s).name, False)
                                for s in t.expr.free_symbols if spec.is_tensor(s))
    return needs


def _backprop(spec, expr, adjoint, via, ch, needs, spread=frozenset(), raw=None, factor=sp.S.One):
    """Push ``adjoint`` (the gradient flowing into ``expr``) onto the tensors in it.

    ``spread`` holds the axes ``adjoint`` is broadcast along because ``expr`` sits inside
    sums over them: a tensor without such an axis appears once per position along it, so
    its contribution is summed over it (``Sum(n, x + w)`` gives ``dw = n*dS``). ``raw`` is
    ``adjoint`` before linearity and ``factor`` the local partial so far (``Contribution``).
    """
    raw = adjoint if raw is None else raw
    local, placeholders, back = local_form(spec, expr)
    for sym in sorted(local.free_symbols, key=str):
        if spec.is_tensor(sym):
            t = spec.tensor_of(sym)
            if not needs.get(t.name, False):
                continue
            part = drop_deltas(sp.diff(local, sym)).xreplace(back)
            if part == 0:
                continue
            axes = (spec.axes_of(adjoint * part) | spread) - t.axes
            contrib = reduce_over(spec, adjoint * part, axes)
            written = reduce_over(spec, part * raw, axes, linear=False)
            partial = None if factor is None else factor * part
            ch.contributions.setdefault(t.name, []).append(
                Contribution(t.name, via, contrib, written, partial))
    for ph, red in placeholders.items():
        if not any(needs.get(spec.tensor_of(s).name, False)
                   for s in red.body.free_symbols if spec.is_tensor(s)):
            continue
        part = drop_deltas(sp.diff(local, ph)).xreplace(back)
        flow = adjoint * part
        axes = (spec.axes_of(flow) | spread) - spec.axes_of(red)
        flow, raw_flow = reduce_over(spec, flow, axes), reduce_over(spec, raw * part, axes, linear=False)
        # still implicit: axes of the reduction that flow is broadcast along, and the reduced axis
        inner = ((spread & spec.axes_of(red)) - spec.axes_of(flow)) | {red.axis}
        mask = sp.S.One
        if isinstance(red, Max):
            mask = ArgmaxMask(red.axis, red.body)
            flow, raw_flow = flow * mask, sp.Mul(raw_flow, mask, evaluate=False)
        elif not isinstance(red, Sum):
            raise SpecError(f"binding {via!r}: no adjoint for {type(red).__name__}")
        # an elementwise partial exists only where this one does not vary along axes the reduction lacks
        elementwise = factor is not None and not spec.axes_of(part) - spec.axes_of(red)
        inner_factor = factor * part * mask if elementwise else None
        _backprop(spec, red.body, flow, via, ch, needs, frozenset(inner), raw_flow, inner_factor)


def local_form(spec, expr):
    """``(local, placeholders, back)``: ``expr`` with each top-level reduction replaced by a
    placeholder that ``sympy.diff`` can differentiate by, and ``back``, which puts the reductions
    back and writes partials such as ``d exp(u) = exp(u)`` as the forward tensor they equal."""
    placeholders = {}
    local = expr
    for red in top_reductions(expr):
        ph = sp.Dummy("R", real=True)
        placeholders[ph] = red
        local = local.xreplace({red: ph})
    back = dict(placeholders)
    back.update({b.expr: b.symbol for b in spec.bindings})
    back.update(_saved_powers(spec, back))
    return local, placeholders, back


def _saved_powers(spec, known) -> dict:
    """``B**(k*p) -> b**k`` for each binding ``b = B**p``: the partial of ``1/sqrt(v + eps)`` reads
    as ``-bnvar_inv**3/2``, reusing the saved tensor. Integer ``k`` keeps it an identity."""
    out = {}
    for b in spec.bindings:
        if isinstance(b.expr, sp.Pow) and b.expr.exp.is_Rational:
            base, p = b.expr.args
            for k in (-3, -2, -1, 2, 3, 4):
                power = base ** (p * k)
                if power not in known and power not in out and not power.is_Symbol:
                    out[power] = b.symbol**k
    return out


def top_reductions(expr):
    """Reductions in ``expr`` that are not inside another reduction."""
    found = []

    def walk(e):
        if isinstance(e, Reduction) and not isinstance(e, ArgmaxMask):
            if e not in found:
                found.append(e)
            return
        for a in e.args:
            walk(a)

    walk(expr)
    return found
