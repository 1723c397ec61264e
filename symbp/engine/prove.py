"""A symbolic proof that each fused closed form equals the chunked chain it came from.

Both sides are taken down to the inputs: the chunked chain with every adjoint
inlined, the fused form with every saved tensor replaced by its definition.
Their difference is expanded, made linear in every ``Sum`` and cleared of the
sums the definitions fix (``Sum(n, bndiff) = 0``, ``Sum(c, probs) = 1``),
until it is exactly zero or stops changing. The batch size and every other
axis stay symbolic, so the proof holds for all shapes, not sampled ones.
"""

from __future__ import annotations

from fractions import Fraction

import sympy as sp

from symbp.engine.algebra import normalize
from symbp.engine.simplify import Inliner, apply_identities, inline_forward
from symbp.engine.tidy import merge_sums
from symbp.functions import sigmoid, softplus
from symbp.spec import Sum, axis_divisors

#: Largest residual (in SymPy operations) put over one cancelled fraction; the layers need 40.
CANCEL_MAX_OPS = 200


def residual(spec, chain, fused, rounds: int = 6) -> sp.Expr:
    """``chain - fused`` reduced as far as the bindings allow (0 means proven).

    Two passes: one keeps powers and exponentials whole (so equal reductions
    under a square root stay equal), one expands them fully (so
    ``exp(a - m)`` splits into factors linearity can pull out).
    """
    start = inline_forward(spec, chain - fused)
    best = None
    for expand in (_products, sp.expand):
        diff = start
        for _ in range(rounds):
            prev = diff
            diff = apply_identities(spec, normalize(spec, expand(diff)), {})
            if diff == 0 or diff == prev:
                break
        diff = sp.expand(diff)
        if diff == 0:
            return diff
        # rational functions (a sigmoid against its own derivative): clear them, when small;
        # ``cancel`` on a large residual (a wrong BatchNorm form) can run for many minutes, and
        # an unproven residual only means that the exact randomised test decides
        if diff.has(sp.Pow) and sp.count_ops(diff) <= CANCEL_MAX_OPS:
            diff = _cancel_within_sums(merge_sums(spec, diff))
            if diff == 0:
                return diff
        best = diff if best is None else best
    return best


def _cancel_within_sums(expr):
    """Put every reduction body, innermost first, and then the whole over one cancelled fraction."""
    def visit(e):
        if e.is_Atom:
            return e
        e = e.func(*[visit(a) for a in e.args])
        return Sum(e.axis, sp.cancel(sp.together(e.body))) if isinstance(e, Sum) else e

    return sp.cancel(sp.together(visit(expr)))


def _products(expr):
    return sp.expand(expr, power_exp=False, power_base=False, log=False, multinomial=False)


def prove(derivation) -> dict:
    """``{'dname': True/False}``: fused form proven equal to the chunked chain."""
    d = derivation
    inliner = Inliner(d.chunked)
    out = {}
    for name, fused in d.fused.gradients.items():
        chain = inliner.full(d.chunked.gradient(name))
        out["d" + name] = residual(d.spec, chain, fused) == 0
    return out


# --- an exact randomised test that shares nothing with the simplifier ------------------------

EXACT_SIZES = (2, 3, 5)
MP_DIGITS = 50
MP_RTOL = 1e-30


class OutsideDomain(ArithmeticError):
    """A random point where the forward itself is undefined (a log of a negative, a division by 0)."""


def exact_random_test(spec, lhs, rhs, sizes=EXACT_SIZES, trials: int = 2, seed: int = 0) -> dict:
    """``lhs == rhs`` as element expressions, tested at random points for concrete axis sizes.

    Schwartz–Zippel style: every tensor entry, option and output gradient is
    a random rational; each axis gets a concrete size (axis ``k`` takes
    ``sizes[(i + k) % len(sizes)]`` in round ``i``, so different axes get
    different sizes); every ``Sum``/``Max`` is expanded over concrete indices
    and every binding is evaluated from its definition, entry by entry, by an
    interpreter of its own (no rule of the simplifier is used). Both sides are
    compared at every entry of the gradient.

    Arithmetic is exact (``fractions.Fraction``) as long as it stays
    rational; a non-rational function (``exp``, ``log``, ``tanh``, a
    fractional power) switches that value to mpmath with 50 significant
    digits, and two values of which either is not exact are equal when they
    differ by at most 1e-30 relative to the largest entry of the gradient.
    Points where the forward is undefined (a log of a non-positive number, a
    division by zero) are drawn again.

    Returns ``{'ok': bool, 'sizes_tested': [{axis: size}], 'points': int,
    'exact': bool (no floating value was involved), 'worst': float,
    'counterexample': None or a description}``.
    """
    import random

    rng = random.Random(seed)
    axes = list(spec.axis_list)
    out = {"ok": True, "sizes_tested": [], "points": 0, "exact": True, "worst": 0.0, "counterexample": None}
    for i in range(len(sizes)):
        size = {a: sizes[(i + k) % len(sizes)] for k, a in enumerate(axes)}
        out["sizes_tested"].append({a.name: s for a, s in size.items()})
        for _ in range(trials):
            for _attempt in range(20):
                try:
                    verdict = _compare_at_point(spec, lhs, rhs, size, rng)
                    break
                except OutsideDomain:
                    continue
            else:
                raise OutsideDomain(f"no point in the forward's domain found for sizes {size}")
            out["points"] += 1
            out["exact"] &= verdict["exact"]
            out["worst"] = max(out["worst"], verdict["worst"])
            if not verdict["ok"]:
                out["ok"] = False
                out["counterexample"] = f"sizes {out['sizes_tested'][-1]}: {verdict['where']}"
                return out
    return out


def _compare_at_point(spec, lhs, rhs, size, rng) -> dict:
    import itertools

    import mpmath

    ev = _ExactEvaluator(spec, size, rng)
    target_axes = sorted(spec.axes_of(lhs) | spec.axes_of(rhs), key=spec.axis_position)
    pairs = []
    for combo in itertools.product(*[range(size[a]) for a in target_axes]):
        idx = dict(zip(target_axes, combo))
        pairs.append((combo, ev.value(lhs, idx), ev.value(rhs, idx)))
    exact = all(isinstance(a, Fraction) and isinstance(b, Fraction) for _, a, b in pairs)
    with mpmath.workdps(MP_DIGITS):
        # never below 1e-15: a gradient that is tiny everywhere (a saturated softmax) is the
        # difference of terms of order one, so its rounding is judged against those terms
        scale = max([abs(mpmath.mpf(v)) if isinstance(v, Fraction) else abs(v)
                     for _, a, b in pairs for v in (_mp(a), _mp(b))] + [mpmath.mpf("1e-15")])
        worst = 0.0
        for combo, a, b in pairs:
            if isinstance(a, Fraction) and isinstance(b, Fraction):
                if a != b:
                    return {"ok": False, "exact": exact, "worst": float("inf"),
                            "where": f"entry {combo}: {a} != {b} (exact)"}
                continue
            diff = abs(_mp(a) - _mp(b))
            rel = diff / scale if scale else diff
            worst = max(worst, float(rel))
            if rel > MP_RTOL:
                return {"ok": False, "exact": exact, "worst": float(rel),
                        "where": f"entry {combo}: {mpmath.nstr(_mp(a), 20)} != {mpmath.nstr(_mp(b), 20)}"}
    return {"ok": True, "exact": exact, "worst": worst}


def _mp(v):
    import mpmath

    return mpmath.mpf(v.numerator) / v.denominator if isinstance(v, Fraction) else v


class _ExactEvaluator:
    """Entry-by-entry values of a spec's element expressions at one random point."""

    def __init__(self, spec, size, rng):
        self.spec = spec
        self.size = size
        self.rng = rng
        self.leaf: dict = {}  # (symbol, index tuple) -> random value
        self.memo: dict = {}
        self.axes_memo: dict = {}
        self.options = {o.symbol: self._rational(positive=True) for o in spec.options.values()}
        self.classes: dict = {}

    def _rational(self, positive=False) -> Fraction:
        q = self.rng.randint(1, 97)
        p = self.rng.randint(1, 1000) if positive else self.rng.randint(-1000, 1000)
        return Fraction(p, q)

    def _axes(self, e):
        if e not in self.axes_memo:
            self.axes_memo[e] = sorted(self.spec.axes_of(e), key=self.spec.axis_position)
        return self.axes_memo[e]

    def value(self, e, idx):
        import mpmath

        with mpmath.workdps(MP_DIGITS):
            return self._ev(e, idx)

    def _ev(self, e, idx):
        import mpmath

        if e.is_Integer or e.is_Rational:
            return Fraction(int(e.p), int(e.q))
        if e.is_Number or e in (sp.pi, sp.E):
            return mpmath.mpf(str(sp.N(e, MP_DIGITS + 5)))
        if e in self.size:
            return Fraction(self.size[e])
        if e in self.options:
            return self.options[e]
        if e.is_Symbol:
            return self._tensor(e, idx)
        key = (e, tuple(idx.get(a) for a in self._axes(e)))
        if key in self.memo:
            return self.memo[key]
        v = self._node(e, idx)
        self.memo[key] = v
        return v

    def _tensor(self, sym, idx):
        spec = self.spec
        if not spec.is_tensor(sym):
            raise ValueError(f"exact test: {sym} is not a tensor, option or axis of {spec.name!r}")
        t = spec.tensor_of(sym)
        axes = [a for a in t.dims if a != 1]
        at = tuple(idx[a] for a in axes)
        if t.role == "classes":
            index_at = tuple(idx[a] for a in t.index_dims)
            if index_at not in self.classes:
                self.classes[index_at] = self.rng.randrange(self.size[t.class_axis])
            return Fraction(int(self.classes[index_at] == idx[t.class_axis]))
        if t.expr is not None:  # a binding: its definition, at this entry
            key = (sym, at)
            if key not in self.memo:
                self.memo[key] = self._ev(t.expr, {a: idx[a] for a in axes})
            return self.memo[key]
        key = (sym, at)
        if key not in self.leaf:
            self.leaf[key] = self._rational(positive=bool(sym.is_positive))
        return self.leaf[key]

    def _node(self, e, idx):
        import mpmath

        from symbp.spec import ArgmaxMask, Max, Sum

        if isinstance(e, (Sum, Max, ArgmaxMask)):
            values = [self._ev(e.body, {**idx, e.axis: k}) for k in range(self.size[e.axis])]
            if isinstance(e, Sum):
                total = Fraction(0)
                for v in values:
                    total = total + v
                return total
            top = max(values, key=_mp)
            if isinstance(e, Max):
                return top
            ties = sum(1 for v in values if _mp(v) == _mp(top))  # the gradient splits among ties
            return Fraction(int(_mp(self._ev(e.body, idx)) == _mp(top)), ties)
        if isinstance(e, sp.Add):
            total = Fraction(0)
            for a in e.args:
                total = total + self._ev(a, idx)
            return total
        if isinstance(e, sp.Mul):
            prod = Fraction(1)
            for a in e.args:
                prod = prod * self._ev(a, idx)
            return prod
        if isinstance(e, sp.Pow):
            base = self._ev(e.base, idx)
            if e.exp.is_Integer:
                if base == 0 and e.exp < 0:
                    raise OutsideDomain("division by zero")
                return base ** int(e.exp)
            power = self._ev(e.exp, idx)
            if _mp(base) < 0 or (base == 0 and _mp(power) <= 0):
                raise OutsideDomain("fractional power of a non-positive number")
            return mpmath.power(_mp(base), _mp(power))
        if isinstance(e, sp.Abs):
            return abs(self._ev(e.args[0], idx))
        if isinstance(e, sp.sign):
            v = _mp(self._ev(e.args[0], idx))
            return Fraction((v > 0) - (v < 0))
        funcs = {sp.exp: mpmath.exp, sp.tanh: mpmath.tanh, sp.sin: mpmath.sin, sp.cos: mpmath.cos,
                 sp.erf: mpmath.erf, sp.sinh: mpmath.sinh, sp.cosh: mpmath.cosh}
        for fn, op in funcs.items():
            if isinstance(e, fn):
                return op(_mp(self._ev(e.args[0], idx)))
        if isinstance(e, sp.log):
            v = self._ev(e.args[0], idx)
            if _mp(v) <= 0:
                raise OutsideDomain("log of a non-positive number")
            return mpmath.log(_mp(v))
        if isinstance(e, sigmoid):
            return 1 / (1 + mpmath.exp(-_mp(self._ev(e.args[0], idx))))
        if isinstance(e, softplus):
            return mpmath.log(1 + mpmath.exp(_mp(self._ev(e.args[0], idx))))
        if isinstance(e, sp.Heaviside):
            v = _mp(self._ev(e.args[0], idx))
            at_zero = self._ev(e.args[1], idx) if len(e.args) > 1 else Fraction(1, 2)
            return Fraction(1) if v > 0 else (at_zero if v == 0 else Fraction(0))
        if isinstance(e, sp.Piecewise):
            for p in e.args:
                if p.cond == sp.true or self._holds(p.cond, idx):
                    return self._ev(p.expr, idx)
            raise OutsideDomain("no branch of a Piecewise applies")
        raise ValueError(f"exact test: cannot evaluate {type(e).__name__}: {e}")

    def _holds(self, c, idx) -> bool:
        """A branch condition at this point (compared exactly where both sides are rational)."""
        if isinstance(c, sp.And):
            return all(self._holds(a, idx) for a in c.args)
        if isinstance(c, sp.Or):
            return any(self._holds(a, idx) for a in c.args)
        if isinstance(c, sp.Not):
            return not self._holds(c.args[0], idx)
        if isinstance(c, sp.ITE):  # if a then b else c, as SymPy writes a clamp's conditions
            return self._holds(c.args[1] if self._holds(c.args[0], idx) else c.args[2], idx)
        if c is sp.true or c is sp.false:
            return c is sp.true
        ops = {sp.StrictGreaterThan: lambda a, b: a > b, sp.GreaterThan: lambda a, b: a >= b,
               sp.StrictLessThan: lambda a, b: a < b, sp.LessThan: lambda a, b: a <= b,
               sp.Eq: lambda a, b: a == b, sp.Ne: lambda a, b: a != b}
        for cls, op in ops.items():
            if isinstance(c, cls):
                return bool(op(_mp(self._ev(c.lhs, idx)), _mp(self._ev(c.rhs, idx))))
        raise ValueError(f"exact test: cannot evaluate the condition {c}")


def prove_exact(derivation, sizes=EXACT_SIZES, trials: int = 2, seed: int = 0) -> dict:
    """Per gradient ``'dname'``: the symbolic proof and the exact randomised test, side by side.

    ``{'dname': {'proved_symbolically': bool, 'exact_random_ok': bool,
    'sizes_tested': [...], 'points': int, 'exact': bool, 'counterexample': ...}}``.
    The symbolic proof holds for every size but reuses the simplifier's
    rules; the randomised test shares none of them but covers only the sizes
    it tried (with error probability bounded by Schwartz–Zippel for the
    rational parts and by the 1e-30 tolerance for the rest).
    """
    d = derivation
    inliner = Inliner(d.chunked)
    out = {}
    for name, fused in d.fused.gradients.items():
        chain = inliner.full(d.chunked.gradient(name))
        test = exact_random_test(d.spec, chain, fused, sizes=sizes, trials=trials, seed=seed)
        out["d" + name] = {"proved_symbolically": residual(d.spec, chain, fused) == 0,
                           "exact_random_ok": test["ok"], "sizes_tested": test["sizes_tested"],
                           "points": test["points"], "exact": test["exact"],
                           "counterexample": test["counterexample"]}
    return out


def side_conditions(spec) -> list:
    """What the proof assumes beyond the bindings: divisors made of axis sizes are non-zero,
    class data is one-hot (each row sums to one), options are positive."""
    found = [f"{b} > 0" for b in axis_divisors(spec)]
    found += [f"{t.name} one-hot along {t.class_axis}" for t in spec.tensors.values() if t.role == "classes"]
    found += [f"{o} > 0" for o in spec.options]
    return found
