"""Reduction algebra: linearity of ``Sum`` over an axis.

``Sum(k, a*e + b)`` with ``a`` free of ``k`` becomes ``a*Sum(k, e) + k*b``:
factors that do not vary along the summed axis come out, and a sum of a
constant is the axis size times it. A one-hot (``Spec.classes``) summed over
its class axis is one, which is what one-hot means. Both the reverse mode (adjoints of
broadcasts) and the simplifier use it, so gradients never carry a reduction
of something that does not vary along its axis.
"""

from __future__ import annotations

import sympy as sp

from symbp.spec import Spec, Sum


def expand_products(expr: sp.Expr) -> sp.Expr:
    """Distribute products over sums only (no power or log rewriting)."""
    return sp.expand(expr, mul=True, multinomial=False, power_exp=False,
                     power_base=False, log=False, deep=False)


def sum_along(spec: Spec, axis, body: sp.Expr) -> sp.Expr:
    """``Sum(axis, body)`` with everything that can come out taken out."""
    memo = spec.memo("sum_along")
    key = (axis, body)
    if key not in memo:
        memo[key] = _sum_along(spec, axis, body)
    return memo[key]


def _sum_along(spec: Spec, axis, body: sp.Expr) -> sp.Expr:
    total = sp.S.Zero
    for term in sp.Add.make_args(expand_products(body)):
        inside, outside = [], []
        for f in sp.Mul.make_args(term):
            (inside if axis in spec.axes_of(f) else outside).append(f)
        coeff = sp.Mul(*outside)
        if not inside:
            total += axis * coeff
        elif len(inside) == 1 and _is_one_hot_along(spec, inside[0], axis):
            total += coeff  # a one-hot row sums to one
        else:
            total += coeff * Sum(axis, sp.Mul(*inside))
    return total


def _is_one_hot_along(spec: Spec, f, axis) -> bool:
    return spec.is_tensor(f) and spec.tensor_of(f).class_axis == axis


def reduce_over(spec: Spec, expr: sp.Expr, axes, linear: bool = True) -> sp.Expr:
    """Sum ``expr`` over each axis in ``axes`` (in declaration order, the first innermost);
    with ``linear=False`` the sums are kept as written, nothing taken out."""
    for a in sorted(axes, key=spec.axis_position):
        expr = sum_along(spec, a, expr) if linear else Sum(a, expr)
    return expr


def normalize(spec: Spec, expr: sp.Expr) -> sp.Expr:
    """Apply linearity to every ``Sum`` in ``expr``, innermost first."""
    if not expr.args or expr.is_Atom:
        return expr
    memo = spec.memo("normalize")
    if expr not in memo:
        memo[expr] = _normalize(spec, expr)
    return memo[expr]


def _normalize(spec: Spec, expr: sp.Expr) -> sp.Expr:
    if isinstance(expr, Sum):
        return sum_along(spec, expr.axis, normalize(spec, expr.body))
    if not expr.args or expr.is_Atom:
        return expr
    new = [normalize(spec, a) for a in expr.args]
    if all(a is b for a, b in zip(new, expr.args)):
        return expr
    return expr.func(*new)
