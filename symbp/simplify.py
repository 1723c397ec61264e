"""Reduction-aware rewriting of the chunked chain into the fused closed form.

For each differentiable input (and, for the record, each intermediate):

1. *Inline* the chunked chain: every adjoint symbol is replaced by its own
   gradient until only the output's adjoint is left.
2. *Identities from the definitions.* Every ``Sum`` is made linear
   (``algebra.normalize``) and then checked against the bindings: its body is
   expanded down to the inputs, linearity applied again, and if what is left
   holds no tensor at all the sum is replaced by it. This is how
   ``Sum(n, bndiff) = 0`` (the mean path of BatchNorm) and
   ``Sum(c, probs) = 1`` (the max-shift path of cross-entropy) are found;
   no layer is special-cased.
3. *Rewrite into saved quantities.* Each saved binding is solved for its
   same-shaped operand (``bnraw = bndiff*bnvar_inv`` gives
   ``bndiff = bnraw/bnvar_inv``; ``bnvar_inv = (bnvar+eps)**-1/2`` gives
   ``bnvar = bnvar_inv**-2 - eps``), other reduction-free bindings are
   replaced by their definitions, and steps 2 and 3 repeat until nothing
   changes.
4. *Tidy*: gather the common factor so the result reads like the formula a
   careful person writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from symbp.algebra import normalize
from symbp.reverse import Chunked
from symbp.spec import Reduction, Spec, SpecError, Sum


@dataclass
class Identity:
    """``lhs = rhs``, found from the bindings and used in the fused form."""

    lhs: sp.Expr
    rhs: sp.Expr


@dataclass
class Fused:
    """Closed forms of the gradients, written in saved quantities."""

    gradients: dict  # tensor name -> expr
    identities: list = field(default_factory=list)
    path_values: dict = field(default_factory=dict)  # (target, via) -> simplified contribution


def fuse(ch: Chunked, names=None) -> Fused:
    spec = ch.spec
    inliner = Inliner(ch)
    rewrites = basis_rewrites(spec)
    identities: dict = {}
    names = names if names is not None else [t.name for t in spec.differentiable
                                             if t.name in ch.contributions]
    out = Fused({})
    for name in names:
        out.gradients[name] = closed_form(spec, inliner.full(ch.gradient(name)), rewrites, identities)
    for name in ch.order:
        for c in ch.contributions[name]:
            out.path_values[(name, c.via)] = closed_form(spec, inliner.full(c.expr), rewrites, identities)
    out.identities = [Identity(k, v) for k, v in identities.items()]
    return out


def closed_form(spec: Spec, expr, rewrites, identities) -> sp.Expr:
    """Steps 2 to 4 on an inlined gradient."""
    for _ in range(12):
        prev = expr
        expr = apply_identities(spec, normalize(spec, expr), identities)
        expr = expr.xreplace(rewrites)
        if expr == prev:
            break
    else:
        raise SpecError(f"spec {spec.name!r}: rewriting into saved quantities does not settle")
    return tidy(spec, expr)


class Inliner:
    """Substitutes adjoints by their gradients, memoised per tensor."""

    def __init__(self, ch: Chunked):
        self.ch = ch
        self.memo: dict = {}
        self.by_symbol = {sym: name for name, sym in ch.adjoints.items()}

    def full(self, expr):
        subs = {}
        for s in expr.free_symbols:
            name = self.by_symbol.get(s)
            if name is not None and name in self.ch.contributions:
                subs[s] = self.of(name)
        return expr.xreplace(subs) if subs else expr

    def of(self, name):
        if name not in self.memo:
            self.memo[name] = self.full(self.ch.gradient(name))
        return self.memo[name]


def basis_rewrites(spec: Spec) -> dict:
    """Symbol -> expression that moves a gradient towards the saved tensors."""
    saved = set(spec.saved)
    rw = {}
    for name in spec.saved:
        t = spec.tensors[name]
        if t.expr is None or _has_reduction(t.expr):
            continue
        for s in sorted(t.expr.free_symbols, key=str):
            if not spec.is_tensor(s):
                continue
            u = spec.tensor_of(s)
            if u.name in saved or u.role == "classes" or u.axes != t.axes or s in rw:
                continue
            dummy = sp.Dummy(u.name)
            sols = sp.solve(sp.Eq(t.symbol, t.expr.xreplace({s: dummy})), dummy, check=False)
            if len(sols) == 1:
                rw[s] = sols[0]
    for t in spec.bindings:
        if t.symbol not in rw and t.name not in saved and not _has_reduction(t.expr):
            rw[t.symbol] = t.expr
    return rw


def apply_identities(spec: Spec, expr, identities: dict):
    """Replace each ``Sum`` whose value follows from the definitions alone."""
    if not isinstance(expr, sp.Basic) or expr.is_Atom:
        return expr
    new_args = [apply_identities(spec, a, identities) for a in expr.args]
    if any(a is not b for a, b in zip(new_args, expr.args)):
        expr = expr.func(*new_args)
    if isinstance(expr, Sum):
        value = definitional_value(spec, expr)
        if value is not None:
            identities.setdefault(expr, value)
            return value
    return expr


def definitional_value(spec: Spec, node: Sum):
    """The value of ``node`` if the bindings make it free of every tensor."""
    if not _mentions_binding(spec, node):
        return None
    full = normalize(spec, inline_forward(spec, node))
    if any(spec.is_tensor(s) for s in full.free_symbols) or full.has(Reduction):
        return None
    return full


def inline_forward(spec: Spec, expr):
    """Replace forward bindings by their definitions, down to the inputs."""
    defs = {t.symbol: t.expr for t in spec.bindings}
    for _ in range(len(defs) + 1):
        new = expr.xreplace(defs)
        if new == expr:
            return expr
        expr = new
    return expr


def tidy(spec: Spec, expr):
    """Gather the common factor, then pull an axis size out of the bracket.

    ``g*v*(dy - S/n - b*T/(n-1))`` reads better as
    ``g*v/n*(n*dy - S - n/(n-1)*b*T)``, the form of the seeds' one-liner.
    """
    expr = sp.expand(expr, power_exp=False, power_base=False, log=False, multinomial=False)
    gathered = sp.gcd_terms(expr, fraction=False)
    expr = min((expr, gathered, sp.factor_terms(gathered)), key=sp.count_ops)
    outside, brackets = [], []
    for f in sp.Mul.make_args(expr):
        (brackets if isinstance(f, sp.Add) else outside).append(f)
    if len(brackets) != 1:
        return expr
    bracket = brackets[0]
    for axis in spec.axis_list:
        dens = [sp.fraction(sp.together(t))[1] for t in sp.Add.make_args(bracket)]
        if any(d == axis for d in dens):
            inner = sp.Add(*[sp.expand(axis * t, power_exp=False, power_base=False, log=False, deep=False)
                             for t in sp.Add.make_args(bracket)])
            return sp.Mul(*outside) / axis * inner
    return expr


def _has_reduction(expr) -> bool:
    return any(isinstance(a, Reduction) for a in sp.preorder_traversal(expr))


def _mentions_binding(spec, expr) -> bool:
    return any(spec.is_tensor(s) and spec.tensor_of(s).expr is not None for s in expr.free_symbols)
