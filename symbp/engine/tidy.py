"""Step 4 of the simplifier: of a few equal forms, keep the one with the fewest torch operations.

``tidy`` expands, gathers, cancels (only where that removes a division that could overflow)
and merges sums over the same axis, then chooses by ``cost``: the tensor operations the
lowered code runs, plus a heavy charge for dividing by what may be zero.
"""

from __future__ import annotations

import sympy as sp

from symbp.spec import Spec, Sum


def tidy(spec: Spec, expr):
    """Choose the cheapest of a few equal forms, then pull an axis size out of the bracket.

    Candidates: expanded, common factor gathered, common factors cancelled
    (``p*(1 - p)`` against ``1/(1 - p)``: cancelling only removes divisions,
    so the result is defined wherever the input was) and sums over the same
    axis merged (``Σ_n(a) + 2*Σ_n(b)`` is one reduction, ``Σ_n(a + 2*b)``).
    The cost counts operations and charges heavily for dividing by a tensor
    expression that is not a positive saved tensor, which overflows where
    the forward is fine. ``g*v*(dy - S/n - b*T/(n-1))`` then reads as
    ``g*v/n*(n*dy - S - n/(n-1)*b*T)``, the form of the seeds' one-liner.
    """
    expanded = sp.expand(expr, power_exp=False, power_base=False, log=False, multinomial=False)
    gathered = sp.gcd_terms(expanded, fraction=False)
    cands = [expr, expanded, gathered, sp.factor_terms(gathered)]
    if _risky_divisions(spec, expanded):
        cancelled = sp.cancel(sp.together(expanded))
        cands += [cancelled, sp.factor_terms(cancelled),
                  sp.factor_terms(sp.expand(cancelled, power_exp=False, power_base=False, log=False))]
    terms = sp.Add.make_args(expanded)
    for sym in sorted({s for s in expanded.free_symbols if spec.is_tensor(s)}, key=str):
        if sum(1 for t in terms if t.has(sym)) > 1:  # collecting a symbol in one term changes nothing
            collected = sp.collect(expanded, sym)
            cands.append(collected)
            if sp.count_ops(collected) < 120:  # factor_terms is slow on large expressions
                cands.append(sp.factor_terms(collected))
    cands = list(dict.fromkeys(cands))  # repeats merge to the same form: merge each form once
    cands = list(dict.fromkeys(cands + [merge_sums(spec, c) for c in cands]))
    costs = [cost(spec, e) for e in cands]
    cheapest = [e for e, c in zip(cands, costs) if c == min(costs)]
    # the first of the cheapest with the fewest operations, counting them only to break a tie
    expr = cheapest[0] if len(cheapest) == 1 else min(cheapest, key=sp.count_ops)
    outside, brackets = [], []
    for f in sp.Mul.make_args(expr):
        (brackets if isinstance(f, sp.Add) else outside).append(f)
    if len(brackets) != 1:
        return expr
    bracket = brackets[0]
    dens = [sp.fraction(sp.together(t))[1] for t in sp.Add.make_args(bracket)]
    for axis in spec.axis_list:
        if any(d == axis for d in dens):
            inner = sp.Add(*[sp.expand(axis * t, power_exp=False, power_base=False, log=False, deep=False)
                             for t in sp.Add.make_args(bracket)])
            return sp.Mul(*outside) / axis * inner
    return expr


def cost(spec: Spec, expr) -> int:
    """Tensor operations the lowered code will run, plus a heavy charge for each risky division."""
    return tensor_ops(spec, expr) + 20 * _risky_divisions(spec, expr)


def tensor_ops(spec: Spec, expr) -> int:
    """Roughly the torch calls ``expr`` lowers to: work on scalars (sizes, options) is free.

    A sum of k terms is k - 1 additions (a negated term is a subtraction, not a negation
    and an addition); a product of k tensor factors is k - 1 multiplications.
    """
    cache = spec.__dict__.setdefault("_tensor_ops", {})
    if expr not in cache:
        cache[expr] = _tensor_ops(spec, expr)
    return cache[expr]


def _tensor_ops(spec: Spec, expr) -> int:
    if not any(spec.is_tensor(s) or s.name.startswith("d") for s in expr.free_symbols):
        return 0
    if expr.is_Atom:
        return 0
    if isinstance(expr, sp.Add):
        return len(expr.args) - 1 + sum(tensor_ops(spec, -a if a.could_extract_minus_sign() else a)
                                        for a in expr.args)
    if isinstance(expr, sp.Mul):
        coeff, rest = expr.as_coeff_Mul()
        factors = sp.Mul.make_args(rest)
        tensors = [f for f in factors if tensor_ops(spec, f) or spec.axes_of(f) or f.is_Symbol]
        scalar = len(factors) > len(tensors) or coeff not in (1, -1)
        return max(len(tensors) - 1, 0) + int(scalar) + sum(tensor_ops(spec, f) for f in factors)
    if isinstance(expr, sp.Pow) and expr.exp == -1:
        return 1 + tensor_ops(spec, expr.base)
    return 1 + sum(tensor_ops(spec, a) for a in expr.args if isinstance(a, sp.Expr))


def _risky_divisions(spec: Spec, expr) -> int:
    """Divisions by tensor-valued expressions not known to be positive (``1 - p`` with ``p`` a sigmoid)."""
    count = 0
    for node in sp.preorder_traversal(expr):
        if isinstance(node, sp.Pow) and node.exp.is_negative:
            base = node.base
            if any(spec.is_tensor(s) for s in base.free_symbols) and not base.is_positive:
                count += 1
    return count


def merge_sums(spec: Spec, expr):
    """``a*Σ_k(e) + b*Σ_k(f)`` -> ``Σ_k(a*e + b*f)`` where ``a``, ``b`` do not vary along ``k``."""
    if not isinstance(expr, sp.Basic) or expr.is_Atom:
        return expr
    expr = expr.func(*[merge_sums(spec, a) for a in expr.args]) if expr.args else expr
    if not isinstance(expr, sp.Add):
        return expr
    groups: dict = {}
    rest = []
    lone = {}  # axis -> factors of the bodies of terms with a single sum, to choose among several
    for term in expr.args:
        sums = [f for f in sp.Mul.make_args(term) if isinstance(f, Sum)]
        if len(sums) == 1:
            lone.setdefault(sums[0].axis, set()).update(sp.Mul.make_args(sums[0].body))
    for term in expr.args:
        sums = [f for f in sp.Mul.make_args(term) if isinstance(f, Sum)
                and f.axis not in spec.axes_of(term / f)]
        if sums:  # with several, join the one whose body shares most factors with the others'
            s = max(sums, key=lambda f: len(lone.get(f.axis, set()) & set(sp.Mul.make_args(f.body))))
            groups.setdefault(s.axis, []).append(term / s * s.body)
            continue
        rest.append(term)
    if not any(len(v) > 1 for v in groups.values()):
        return expr
    out = sp.Add(*rest)
    for axis, bodies in groups.items():
        out += Sum(axis, sp.factor_terms(sp.Add(*bodies)))
    return out
