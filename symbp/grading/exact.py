"""Exact numbers for the grader's own evaluator: rationals, 50-digit floats, dual numbers.

The randomised test must not share code with the engine it checks, so it has its own
arithmetic: ``Fraction`` while values stay rational, 50-digit ``mpmath`` (a private
context) once a square root, exp, log or tanh leaves the rationals, and ``Dual``
numbers carrying a forward-mode derivative through either. ``compiled`` turns an
element expression into a closure over that arithmetic, evaluated per index by
:class:`~symbp.grading.world.World`.
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

import mpmath
import sympy as sp

from symbp.spec import ArgmaxMask, Max, SpecError, Sum

MP_DIGITS = 50
MP = mpmath.MPContext()  # a private context: the global mpmath precision stays as it is
MP.dps = MP_DIGITS
TOLERANCE = MP.mpf(10) ** -(MP_DIGITS - 12)
#: The errors of an evaluation outside the domain (a division by zero, log of a negative, ...).
UNDEFINED = (ZeroDivisionError, ValueError, OverflowError)


class Dual:
    """``a + b*eps`` with eps**2 = 0: forward-mode derivative of one input element."""

    __slots__ = ("a", "b")

    def __init__(self, a, b):
        self.a, self.b = a, b


def to_mp(x):
    if isinstance(x, Fraction):
        return MP.mpf(x.numerator) / x.denominator
    return x


def add(x, y):
    if isinstance(x, Dual) or isinstance(y, Dual):
        x, y = _dual(x), _dual(y)
        return Dual(add(x.a, y.a), add(x.b, y.b))
    if isinstance(x, Fraction) and isinstance(y, Fraction):
        return x + y
    return to_mp(x) + to_mp(y)


def mul(x, y):
    if isinstance(x, Dual) or isinstance(y, Dual):
        x, y = _dual(x), _dual(y)
        return Dual(mul(x.a, y.a), add(mul(x.a, y.b), mul(x.b, y.a)))
    if isinstance(x, Fraction) and isinstance(y, Fraction):
        return x * y
    if (isinstance(x, Fraction) and x == 0) or (isinstance(y, Fraction) and y == 0):
        return Fraction(0)
    return to_mp(x) * to_mp(y)


def _dual(x):
    return x if isinstance(x, Dual) else Dual(x, Fraction(0))


def real(x):
    return x.a if isinstance(x, Dual) else x


def _pow(x, e: Fraction):
    if isinstance(x, Dual):
        return Dual(_pow(x.a, e), mul(mul(e, _pow(x.a, e - 1)), x.b))
    if e.denominator == 1 and isinstance(x, Fraction):
        if x == 0 and e < 0:
            raise ZeroDivisionError("zero to a negative power")
        return x ** int(e)
    return to_mp(x) ** to_mp(e)


def _func(f, x):
    if isinstance(x, Dual):
        v = _func(f, x.a)
        if f is sp.exp:
            d = v
        elif f is sp.log:
            d = _pow(x.a, Fraction(-1))
        elif f is sp.tanh:
            d = add(Fraction(1), -mul(v, v))
        else:  # Abs
            d = Fraction(1 if to_mp(x.a) >= 0 else -1)
        return Dual(v, mul(d, x.b))
    if f is sp.Abs:
        return abs(x)
    fn = {sp.exp: MP.exp, sp.log: MP.log, sp.tanh: MP.tanh}[f]
    if f is sp.exp and x == 0:
        return Fraction(1)
    if f is sp.log and x == 1:
        return Fraction(0)
    return fn(to_mp(x))


def neg(x):
    return mul(Fraction(-1), x)


def close(x, y) -> bool:
    """Exactly equal rationals, or equal to ``MP_DIGITS - 12`` digits."""
    x, y = real(x), real(y)
    if isinstance(x, Fraction) and isinstance(y, Fraction):
        return x == y
    x, y = to_mp(x), to_mp(y)
    return abs(x - y) <= TOLERANCE * (1 + max(abs(x), abs(y)))


@lru_cache(maxsize=8192)
def compiled(e):
    """``e`` as a closure ``f(world, env, values, cut_edge)``: the tree is walked once, not per element."""
    if e.is_Number:
        value = Fraction(int(e.p), int(e.q)) if e.is_Rational else Fraction(str(e))
        return lambda w, env, values, cut: value
    if e.is_Symbol:
        return lambda w, env, values, cut: w.symbol(e, env, values, cut)
    if isinstance(e, (sp.Add, sp.Mul)):
        fs = [compiled(a) for a in e.args]
        op, unit = (add, Fraction(0)) if isinstance(e, sp.Add) else (mul, Fraction(1))

        def fold(w, env, values, cut):
            acc = unit
            for f in fs:
                acc = op(acc, f(w, env, values, cut))
            return acc
        return fold
    if isinstance(e, sp.Pow):
        if not e.exp.is_Rational:
            raise SpecError(f"non-rational exponent in {e}")
        ex = Fraction(int(e.exp.p), int(e.exp.q))
        base = compiled(e.base)
        return lambda w, env, values, cut: _pow(base(w, env, values, cut), ex)
    if isinstance(e, (sp.exp, sp.log, sp.tanh, sp.Abs)):
        arg, func = compiled(e.args[0]), e.func
        return lambda w, env, values, cut: _func(func, arg(w, env, values, cut))
    if isinstance(e, (Sum, Max, ArgmaxMask)):
        body, axis = compiled(e.body), e.axis

        def along(w, env, values, cut):
            return [body(w, {**env, axis: k}, values, cut) for k in range(w.size[axis])]
        if isinstance(e, Sum):
            def total(w, env, values, cut):
                acc = Fraction(0)
                for v in along(w, env, values, cut):
                    acc = add(acc, v)
                return acc
            return total
        if isinstance(e, Max):
            return lambda w, env, values, cut: max(along(w, env, values, cut), key=lambda v: to_mp(real(v)))

        def mask(w, env, values, cut):
            vals = [to_mp(real(v)) for v in along(w, env, values, cut)]
            return Fraction(int(vals.index(max(vals)) == env[axis]))
        return mask
    if not any(isinstance(a, (Sum, Max, ArgmaxMask)) for a in sp.preorder_traversal(e)):
        return _elementwise(e)
    raise SpecError(f"cannot evaluate {type(e).__name__} in {e}")


def _elementwise(e):
    """Any other elementwise function (sigmoid, erf, Piecewise, ...) by SymPy's numerics.

    The leaves are evaluated here and substituted as numbers; a dual leaf adds
    the partial derivative (SymPy's ``diff`` of this one function) times its part.
    """
    leaves = sorted(e.free_symbols, key=str)
    partials = {}

    def number(x):
        x = real(x)
        if isinstance(x, Fraction):
            return sp.Rational(x.numerator, x.denominator)
        return sp.Float(str(x), MP_DIGITS)

    def value_of(expr, subs):
        v = expr.xreplace(subs)
        n = v.evalf(MP_DIGITS)
        if not n.is_Number:  # a function SymPy cannot evaluate directly: its exp form
            n = v.rewrite(sp.exp).evalf(MP_DIGITS)
        if not n.is_Number:
            raise SpecError(f"the exact test cannot evaluate {e}")
        if not n.is_real:
            raise ValueError(f"{e} is not real here")
        return MP.mpf(str(n))

    def run(w, env, values, cut):
        got = {s: w.symbol(s, env, values, cut) for s in leaves}
        subs = {s: number(x) for s, x in got.items()}
        v = value_of(e, subs)
        duals = [s for s, x in got.items() if isinstance(x, Dual)]
        if not duals:
            return v
        slope = Fraction(0)
        for s in duals:
            if s not in partials:
                partials[s] = sp.diff(e, s)
            slope = add(slope, mul(value_of(partials[s], subs), got[s].b))
        return Dual(v, slope)
    return run
