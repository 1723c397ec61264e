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
3. *Rewrite into saved quantities, soundly* (``basis_rewrites``): a saved
   binding's definition is replaced by the saved tensor wherever it appears,
   and saved bindings are peeled back through total inverses only
   (``bndiff = bnraw/bnvar_inv`` because ``bnvar_inv > 0``;
   ``bnvar = bnvar_inv**-2 - eps``; ``exp(-x) = 1/sig - 1``). No solver, no
   inverse of ``exp``/``log``/``tanh``/``Abs``, no division by what may be
   zero: the result is defined and equal wherever the forward is. Other
   reduction-free bindings are replaced by their definitions, and steps 2
   and 3 repeat until nothing changes.
4. *Tidy*: cancel, merge sums, and keep the equal form with the fewest torch
   operations, read like the formula a careful person writes (``symbp.engine.tidy``).

Given a :class:`~symbp.engine.trace.Trace`, ``closed_form`` records each step that changed the
expression and why; ``fuse`` keeps those records, which the teaching views print.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from symbp.engine.algebra import normalize
from symbp.engine.reverse import Chunked
from symbp.engine.tidy import tidy
from symbp.engine.trace import Trace
from symbp.spec import ArgmaxMask, Reduction, Spec, Sum


@dataclass
class Identity:
    """``lhs = rhs``, found from the bindings and used in the fused form."""

    lhs: sp.Expr
    rhs: sp.Expr


@dataclass
class Fused:
    """Closed forms of the gradients, written in saved quantities, and how each was reached."""

    gradients: dict  # tensor name -> expr
    identities: list = field(default_factory=list)
    path_values: dict = field(default_factory=dict)  # (target, via) -> contribution, untidied (0 = vanishes)
    rules: dict = field(default_factory=dict)  # the rewrites into saved tensors (``basis_rewrites``)
    traces: dict = field(default_factory=dict)  # tensor name -> Trace of its closed form
    path_traces: dict = field(default_factory=dict)  # (target, via) -> Trace of its path value

    def trace(self, spec: Spec, expr) -> Trace:
        """The closed form of any other expression (one path's value, say), with its steps; memoised.

        The same as ``closed_form(..., trace=Trace(expr))``: the untidied closed form, then ``tidy``."""
        memo = self.__dict__.setdefault("_traces", {})
        if expr not in memo:
            rough, value = self.untidied(spec, expr)
            memo[expr] = trace = Trace(expr, dict(rough.thaw), list(rough.steps), dict(rough.found))
            tidied = tidy(spec, value)
            trace.note("tidy", value, tidied)
        return memo[expr]

    def untidied(self, spec: Spec, expr):
        """``(trace, value)`` of ``closed_form(..., readable=False)``: every step but the tidying;
        memoised, and shared with ``fuse``'s path values."""
        memo = self.__dict__.setdefault("_untidied", {})
        if expr not in memo:
            trace = Trace(expr)
            memo[expr] = trace, closed_form(spec, expr, self.rules, {}, readable=False, trace=trace)
        return memo[expr]

    def vanishes(self, spec: Spec, expr) -> bool:
        """Whether ``trace(spec, expr).result`` is 0, tidying only where that can decide it.

        Tidying rewrites an expression into equal forms, so it reaches 0 only from something
        identically zero; an untidied form that is a product of factors no rewriting can make
        zero (``nonzero_form``) is not, and its tidying is skipped."""
        rough, value = self.untidied(spec, expr)
        if value == 0:
            return True
        if nonzero_form(spec, value):
            return False
        return self.trace(spec, expr).result == 0


def fuse(ch: Chunked, names=None) -> Fused:
    spec = ch.spec
    inliner = Inliner(ch)
    rewrites = basis_rewrites(spec)
    identities: dict = {}
    names = names if names is not None else [t.name for t in spec.differentiable]
    out = Fused({}, rules=rewrites)
    for name in names:  # a tensor the output does not depend on has gradient 0
        trace = out.traces[name] = Trace(inliner.full(ch.gradient(name)))
        out.gradients[name] = closed_form(spec, trace.start, rewrites, identities, trace=trace)
    for name in ch.order:
        for c in ch.contributions[name]:
            trace = out.path_traces[(name, c.via)] = Trace(inliner.full(c.expr))
            out.path_values[(name, c.via)] = closed_form(spec, trace.start, rewrites, identities,
                                                         readable=False, trace=trace)
            untidied = out.__dict__.setdefault("_untidied", {})
            untidied.setdefault(trace.start, (trace, out.path_values[(name, c.via)]))
    out.identities = [Identity(k, v) for k, v in identities.items()]
    return out


def closed_form(spec: Spec, expr, rewrites, identities, readable=True, trace: Trace | None = None) -> sp.Expr:
    """Steps 2 to 4 on an inlined gradient; ``trace``, if given, records each step that changes it.

    Rewriting terminates: inlining follows the acyclic bindings and the
    inverse rules only introduce saved symbols, which are never inlined. The
    round limit is a guard; past it the gradient is kept as inlined, which
    is correct, only less compact.
    """
    start = expr
    thaw = getattr(rewrites, "thaw", None) or {}
    if trace is not None:
        trace.thaw = thaw
    for _ in range(16):
        prev = expr
        expr = _round(spec, expr, rewrites, identities, trace)
        if expr == prev:
            break
    else:
        plain = basis_rewrites(spec, invert=False)
        expr = start
        if trace is not None:
            trace.steps.clear()  # the record is of the rewriting that is kept
        for _ in range(len(spec.tensors) + 2):
            prev = expr
            expr = _round(spec, expr, plain, identities, trace)
            if expr == prev:
                break
    if thaw:
        expr = expr.xreplace(thaw)
    if not readable:
        return expr
    tidied = tidy(spec, expr)
    if trace is not None:
        trace.note("tidy", expr, tidied)
    return tidied


def nonzero_form(spec: Spec, expr) -> bool:
    """Whether ``expr`` is non-zero as a formal expression in its symbols and reductions, so that
    no algebraic rewriting reaches 0: a product of non-zero numbers, symbols, sums of distinct
    monomials (``n - 1``), numeric powers of these, ``Sum``s of these and arg-max masks (which
    SymPy never evaluates). False means only "not shown"."""
    if expr.is_Number:
        return expr != 0
    if expr.is_Symbol:
        return True
    if isinstance(expr, sp.Mul):
        return all(nonzero_form(spec, f) for f in expr.args)
    if isinstance(expr, sp.Pow):
        return expr.exp.is_Number and nonzero_form(spec, expr.base)
    if isinstance(expr, Sum):
        return nonzero_form(spec, expr.body)
    if isinstance(expr, ArgmaxMask):
        return True
    if isinstance(expr, sp.Add):  # SymPy gathers like terms, so distinct monomials stay distinct
        return all(_monomial(t) for t in expr.args)
    return False


def _monomial(term) -> bool:
    """A number times integer powers of symbols."""
    for f in sp.Mul.make_args(term):
        base, exp = f.as_base_exp()
        if not (f.is_Number or base.is_Symbol and exp.is_Integer):
            return False
    return True


def _round(spec: Spec, expr, rules, identities: dict, trace: Trace | None):
    """One round of steps 2 and 3: linearity, the identities, the rules into saved tensors."""
    linear = normalize(spec, expr)
    if trace is None:
        return rewrite(apply_identities(spec, linear, identities), rules)
    known = len(trace.found)
    found = apply_identities(spec, linear, trace.found)
    for k, v in trace.found.items():
        identities.setdefault(k, v)
    new = rewrite(found, rules)
    trace.note("linearity", expr, linear)
    trace.note("identity", linear, found, lambda: trace.identities_used(linear, known))
    trace.note("saved", found, new, lambda: trace.rules_fired(found, rules))
    return new


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


def basis_rewrites(spec: Spec, invert: bool = True) -> dict:
    """Pattern -> replacement rules that move a gradient towards the saved tensors.

    Three kinds, all meaning-preserving wherever the forward is defined:

    * a saved binding's definition (as written, and with unsaved bindings
      inlined) is replaced by the saved symbol: ``Sum(c, counts)`` *is*
      ``counts_sum``, and ``exp(z - m)/counts_sum`` inside a product is ``probs``;
    * a saved binding is peeled back through *total* inverses only
      (``sound_inverses``): ``sig = (1 + exp(-x))**-1`` gives
      ``1 + exp(-x) = 1/sig`` and ``exp(-x) = 1/sig - 1``; ``bnraw =
      bndiff*bnvar_inv`` gives ``bndiff = bnraw/bnvar_inv`` because
      ``bnvar_inv > 0``. Nothing is divided by what may be zero, and no
      ``exp``, ``log``, ``tanh``, ``Abs`` or solver root is ever inverted;
    * other reduction-free bindings are replaced by their definitions.

    Inputs and parameters are never rewritten (they are at hand and exact),
    a rule only replaces a subexpression with the saved tensor's own axes,
    and a rule that could lead back to its own pattern is dropped, so
    rewriting always terminates.
    """
    saved = set(spec.saved)
    inline = {t.symbol: t.expr for t in spec.bindings
              if t.name not in saved and not _has_reduction(t.expr)}
    rw = Rules(spec)
    if invert:
        for name in spec.saved:
            t = spec.tensors[name]
            if t.expr is None:
                continue
            for form in (t.expr, normalize(spec, _fixpoint(t.expr, inline))):
                for key, value in sound_inverses(spec, t.symbol, form):
                    if key in rw or spec.axes_of(key) != t.axes:
                        continue
                    if key.is_Symbol and (not spec.is_tensor(key) or spec.tensor_of(key).expr is None):
                        continue  # inputs and parameters stay as they are
                    if key.is_Symbol and key in value.free_symbols:
                        value = rw.freeze(value, key)  # counts = probs*Σ_s(counts): Σ_s(counts) held whole
                    if _reaches(value.free_symbols, key.free_symbols, {**inline, **rw}):
                        continue
                    rw[key] = value
    for sym, expr in inline.items():
        rw.setdefault(sym, expr)
    return rw


class Rules(dict):
    """Rewrite rules, plus reductions held as opaque symbols while the rules run (``thaw`` undoes it)."""

    def __init__(self, spec=None):
        super().__init__()
        self.spec = spec
        self.thaw: dict = {}

    def freeze(self, value, key):
        """``value`` with each reduction that mentions ``key`` replaced by a symbol standing for it."""
        for node in sorted({r for r in sp.preorder_traversal(value) if isinstance(r, Reduction)
                            and key in r.free_symbols}, key=sp.count_ops):
            if node not in self:
                held = sp.Dummy(f"R_{node.axis}", real=True, positive=node.is_positive or None)
                self[node] = held
                self.thaw[held] = node
        return value.xreplace({r: self[r] for r in self.thaw.values()})


def _reaches(start: set, targets: set, rules: dict) -> bool:
    """Whether expanding ``start`` through the symbol rules can produce a symbol of ``targets``."""
    seen, todo = set(), list(start)
    while todo:
        s = todo.pop()
        if s in targets:
            return True
        if s in seen:
            continue
        seen.add(s)
        if s in rules:
            todo.extend(rules[s].free_symbols)
    return False


def sound_inverses(spec: Spec, value, expr) -> list:
    """``[(subexpression, equal expression in value)]`` along the invertible spines of ``expr``.

    Starts with ``(expr, value)`` and peels one layer at a time while the
    inverse is total on the forward's domain: subtracting the other terms of
    a sum, dividing by the other factors of a product when they are provably
    non-zero, the root of a power of a provably positive base (or the
    reciprocal of a non-zero one). Stops at anything else.
    """
    out = [(expr, value)]
    if not any(spec.is_tensor(s) for s in expr.free_symbols) or expr.is_Symbol:
        return out
    if isinstance(expr, sp.Add):
        for i, a in enumerate(expr.args):
            rest = sp.Add(*(expr.args[:i] + expr.args[i + 1:]))
            out += sound_inverses(spec, value - rest, a)
    elif isinstance(expr, sp.Mul):
        for i, a in enumerate(expr.args):
            coeff = sp.Mul(*(expr.args[:i] + expr.args[i + 1:]))
            if a.is_Number or not coeff.is_nonzero:
                continue
            out += sound_inverses(spec, value / coeff, a)
    elif isinstance(expr, sp.Pow) and expr.exp.is_Rational and expr.exp != 0:
        if expr.exp == -1 and expr.base.is_nonzero:
            out += sound_inverses(spec, 1 / value, expr.base)
        elif expr.base.is_positive:
            out += sound_inverses(spec, value ** (1 / expr.exp), expr.base)
    return out


def rewrite(expr, rules: dict):
    """``xreplace`` by ``rules``, and product patterns replaced inside larger products;
    memoised on a ``Rules`` (the closed forms of one layer repeat it on the same expressions)."""
    if not isinstance(rules, Rules):
        return _rewrite(expr, rules)
    memo = rules.__dict__.setdefault("_rewritten", {})
    key = (len(rules), expr)
    if key not in memo:
        memo[key] = _rewrite(expr, rules)
    return memo[key]


def _rewrite(expr, rules: dict):
    expr = expr.xreplace(rules)
    products = [(k, v) for k, v in rules.items() if isinstance(k, sp.Mul)]
    if not products:
        return expr

    spec = getattr(rules, "spec", None)
    bases = {b for key, _ in products for b in key.as_powers_dict()}

    def visit(e):
        if e.is_Atom:
            return e
        e = e.func(*[visit(a) for a in e.args])
        if isinstance(e, sp.Mul):
            for key, value in products:
                e = _replace_factor(e, key, value)
            if spec is not None and isinstance(e, sp.Mul):
                e = _into_sums(spec, e, products, bases)
        return e

    return visit(expr)


def _into_sums(spec, e, products, bases):
    """``rrms*Σ_d(dy*x)`` -> ``Σ_d(dy*xhat)``: move factors that do not vary along a sum's axis
    into it when that completes a product pattern there (``xhat = x*rrms``)."""
    for s in [f for f in e.args if isinstance(f, Sum)]:
        movable = [f for f in e.args if f is not s and (f.as_base_exp()[0] in bases)
                   and s.axis not in spec.axes_of(f)]
        if not movable:
            continue
        body = s.body * sp.Mul(*movable)
        new = body
        for key, value in products:
            new = _replace_factor(new, key, value) if isinstance(new, sp.Mul) else new
        if new != body:
            return e / (s * sp.Mul(*movable)) * Sum(s.axis, new)
    return e


def _replace_factor(expr, key, value):
    """``expr = key**k * rest`` -> ``value**k * rest`` for the largest whole ``k >= 1``."""
    want = key.as_powers_dict()
    present = set()
    for f in expr.args:
        if not f.is_Number:
            present.update(f.as_powers_dict())
    if any(b not in present for b in want):
        return expr  # a base of the pattern is missing, so k = 0 (checked before building anything)
    have = sp.Mul(*[f for f in expr.args if not f.is_Number]).as_powers_dict()
    ks = []
    for base, p in want.items():
        q = sp.sympify(have.get(base, 0))
        p = sp.sympify(p)
        if not (p.is_Rational and q.is_Rational) or q * p <= 0:
            return expr
        ks.append(sp.floor(q / p))
    k = min(ks)
    if k < 1:
        return expr
    return expr / key**k * value**k


def _fixpoint(expr, rules, limit=64):
    for _ in range(limit):
        new = expr.xreplace(rules)
        if new == expr:
            break
        expr = new
    return expr


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
    memo = spec.memo("definitional_value")
    if node not in memo:
        memo[node] = _definitional_value(spec, node)
    return memo[node]


def _definitional_value(spec: Spec, node: Sum):
    if not _mentions_binding(spec, node):
        return None
    full = normalize(spec, inline_forward(spec, node))
    if any(spec.is_tensor(s) for s in full.free_symbols) or full.has(Reduction):
        return None
    return full


def inline_forward(spec: Spec, expr):
    """Replace forward bindings by their definitions, down to the inputs."""
    memo = spec.memo("inline_forward")
    if expr not in memo:
        memo[expr] = _inline_forward(spec, expr)
    return memo[expr]


def _inline_forward(spec: Spec, expr):
    defs = {t.symbol: t.expr for t in spec.bindings}
    for _ in range(len(defs) + 1):
        new = expr.xreplace(defs)
        if new == expr:
            return expr
        expr = new
    return expr


def _has_reduction(expr) -> bool:
    return any(isinstance(a, Reduction) for a in sp.preorder_traversal(expr))


def _mentions_binding(spec, expr) -> bool:
    return any(spec.is_tensor(s) and spec.tensor_of(s).expr is not None for s in expr.free_symbols)
