"""Naming a wrong answer's mistake: the ones learners make, tried one at a time.

A wrong value is compared, with the exact evaluator, against the gradient changed by
one typical mistake: a path cut (a missing path), the layer's other variance
convention, a sign, a constant or size factor, a forward tensor forgotten or doubled,
a missing sum over a broadcast axis, a transposed matmul; or it is right given its
inputs and inherits an error from an earlier line. When nothing fits, the simplified
difference from the derived gradient is shown. Kept apart from the verdict itself:
a diagnosis only explains, it never changes whether an answer is right.
"""

from __future__ import annotations

from fractions import Fraction

import sympy as sp

from symbp.engine.derivation import derive
from symbp.engine.reverse import grad_name
from symbp.engine.simplify import basis_rewrites, closed_form
from symbp.grading.exact import MP, UNDEFINED, close, neg, real, to_mp
from symbp.grading.report import Verdict
from symbp.grading.values import dims_str
from symbp.grading.world import dependents
from symbp.spec import Sum


class Diagnoses:
    """The diagnosis half of :class:`~symbp.grading.grader.Grader` (a mixin).

    It uses the grader's ``spec``, ``d`` (the derivation), ``layer``, ``options``,
    ``inliner``, ``adjoints`` and ``worlds``.
    """

    def circular(self, expr, t) -> str:
        """A gradient read before backprop has it: d of the target itself or of an upstream tensor."""
        spec = self.spec
        later = dependents(spec)[t.name]
        out = spec.output_tensor.name
        for s in sorted(expr.free_symbols, key=str):
            name = self.adjoints.get(s)
            if name is None or name == out or name in later:
                continue
            read, own = grad_name(name), grad_name(t.name)
            if name == t.name:
                return f"it reads {read}, the gradient it defines"
            return (f"it reads {read}, which backprop computes from {own}; only the gradients of "
                    f"tensors that use {t.name} are known when {own} is computed")
        return ""

    def explain(self, reader, rec, v: Verdict, verdicts: dict):
        """The diagnosis of a wrong value: this line's own mistake, or one it inherits."""
        t = self.spec.tensors[rec.tensor]
        closure = reader.version_closure(rec)
        uses = [r.name for r in reader.assignments.values()
                if r.name != rec.name and r.versions[-1] in closure]
        bad = [u for u in uses if not verdicts[u].correct]
        inherited = ""
        if bad:
            inherited = f"it uses {_and(bad)}, which {'is' if len(bad) == 1 else 'are'} wrong"
        worlds = self.worlds(v.incoming_is_one)
        if bad and self.matches(v.yours, t, worlds):
            v.diagnosis = f"this line is right given its inputs, but {inherited}"
            return
        try:  # shown in Jupyter for every wrong answer, and the diagnosis when nothing else fits
            mine = self.inliner.full(v.yours)
            if v.incoming_is_one:
                mine = mine.xreplace({reader.incoming: 1})
            v.difference = self.difference(mine, v.derived_full)
        except Exception:  # a display nicety: never let it crash a grade
            v.difference = None
        own = self.diagnose(v.yours, t, worlds, v.incoming_is_one)
        if not own:
            own = "yours differs from the gradient"
            if v.difference is not None:
                own = "yours - derived = " + _short(v.difference)
        v.diagnosis = own + (f"; also, {inherited}" if inherited else "")

    def matches(self, expr, t, worlds, cut=None, sign=1) -> bool:
        """Equal to the true gradient (negated, or with a path cut) at every element of every world.

        An expression undefined where the gradient is defined (a division by zero) is not equal.
        """
        try:
            return self._matches(expr, t, worlds, cut, sign)
        except UNDEFINED:
            return False

    def _matches(self, expr, t, worlds, cut, sign) -> bool:
        for w in worlds:
            got = w.over(expr, t.dims)
            want = w.gradient(t.name, cut)
            for idx, g in got.items():
                target = want[idx] if sign == 1 else neg(want[idx])
                if not close(g, target):
                    return False
        return True

    # -- shape ------------------------------------------------------------
    def shape_diagnosis(self, expr, dims, t, worlds) -> str:
        yours, want = dims_str(dims), dims_str(t.dims)
        mine = [a for a in dims if a != 1]
        theirs = [a for a in t.dims if a != 1]
        head = f"shape {yours}, but {t.name} is {want}"
        if set(mine) == set(theirs):
            ok = self.matches(expr, t, worlds)
            values = "its values are right" if ok else "its values are wrong too"
            if mine != theirs:
                return (f"transposed: yours is {yours} but {t.name} is {want} "
                        f"(swap the matmul's operands); {values}")
            lost = [i for i, a in enumerate(t.dims) if a == 1]
            if len(dims) < len(t.dims) and lost:
                return (f"{head}: keep the summed dim, e.g. .sum({lost[0]}, keepdim=True) "
                        f"(a {yours} tensor broadcasts silently, which hides this); {values}")
            if len(dims) > len(t.dims):
                return f"{head}: drop the size-one dim (no keepdim=True, or .squeeze()); {values}"
            return f"{head}; {values}"
        extra = [a for a in mine if a not in theirs]
        if extra and set(theirs) <= set(mine):
            summed = expr
            for a in extra:
                summed = Sum(a, summed)
            where = ", ".join(str(a) for a in extra)
            pos = [i for i, a in enumerate(t.dims) if a == 1]
            how = f" (.sum({pos[0]}, keepdim=True))" if len(pos) == 1 and len(extra) == 1 else ""
            if self.matches(summed, t, worlds):
                return (f"missing sum over {where}: {t.name} is {want} and used along {where}, "
                        f"so its gradient sums over {where}{how}")
            return f"{head}: {t.name} is used along {where}, so its gradient sums over {where}{how}"
        missing = [a for a in theirs if a not in mine]
        if extra and missing:
            return (f"{head}: yours runs along {', '.join(map(str, extra))} where {t.name} runs along "
                    f"{', '.join(map(str, missing))} (a sum or matmul over the wrong axis?)")
        return head

    # -- value ------------------------------------------------------------
    def diagnose(self, value, t, worlds, dout_one) -> str:
        """Name the mistake, when it is one that learners make; else ''."""
        try:
            if all(close(g, 0) for w in worlds for g in w.over(value, t.dims).values()):
                return "yours is zero everywhere"
        except UNDEFINED:
            return "yours divides by zero at some sizes or values where the gradient is defined"
        if self.matches(value, t, worlds, sign=-1):
            return "sign error: yours is minus the gradient"
        return (self.alternative(value, t, dout_one) or self.missing_path(value, t, worlds)
                or self.factor(value, t, worlds) or self.tensor_factor(value, t, worlds))

    def alternative(self, value, t, dout_one) -> str:
        """Is it the gradient of this layer under another choice option (n vs n-1)?"""
        for opt, (default, kind, _) in self.d.layer.options.items():
            if not isinstance(kind, tuple):
                continue
            current = self.spec.settings.get(opt, default)
            for choice in kind:
                if choice == current:
                    continue
                key = (opt, choice)
                if key not in self._alternatives:
                    try:
                        self._alternatives[key] = derive(self.layer, **{**self.options, opt: choice}).spec
                    except Exception:  # an option value the layer rejects: no alternative
                        self._alternatives[key] = None
                other = self._alternatives[key]
                if other is None:
                    continue
                if t.name not in other.tensors:
                    continue
                if self.matches(value, other.tensors[t.name], self.worlds(dout_one, spec=other)):
                    if opt == "variance":
                        if current == "bessel":
                            return ("you divided by n where this layer's variance uses Bessel's n - 1 "
                                    "(yours is the gradient for --variance biased)")
                        return ("you used Bessel's n - 1 where this layer's variance divides by n "
                                "(yours is the gradient for --variance bessel)")
                    return f"yours is the gradient of {self.spec.name} with --{opt} {choice}, not {current}"
        return ""

    def missing_path(self, value, t, worlds) -> str:
        spec = self.spec
        contributions = self.d.chunked.contributions.get(t.name, [])
        vias = [c.via for c in contributions]
        deps = dependents(spec)[t.name]
        for c in contributions:
            if c.via == spec.output_tensor.name:
                continue
            if len(set(vias)) > 1 and self.matches(value, t, worlds, cut=("edge", c.via)):
                return f"missing the path through {c.via} (the term {sp.sstr(c.expr)})"
        found = []
        for b in spec.bindings:
            if b.name in deps and b.role != "output" and self.matches(value, t, worlds, cut=("node", b.name)):
                found.append(b.name)
        if found:  # several nodes of one chain cut the same path: name the chain
            return f"missing the path through {' -> '.join(found)}"
        # two paths missing at once (a fused formula with only the direct term)
        nodes = [b.name for b in spec.bindings if b.name in deps and b.role != "output"]
        for i, p in enumerate(nodes):
            for q in nodes[i + 1:]:
                if self.matches(value, t, worlds, cut=("nodes", (p, q))):
                    return f"missing the paths through {p} and {q}"
        return ""

    def factor(self, value, t, worlds) -> str:
        try:
            return self._factor(value, t, worlds)
        except UNDEFINED:
            return ""

    def _factor(self, value, t, worlds) -> str:
        ratios = []
        for w in worlds:
            got = w.over(value, t.dims)
            want = w.gradient(t.name)
            r = None
            for idx, g in got.items():
                if close(want[idx], 0):
                    if not close(g, 0):
                        return ""
                    continue
                q = _ratio(g, want[idx])
                if r is None:
                    r = q
                elif not close(q, r):
                    return ""
            if r is None:
                return ""
            ratios.append((w, r))
        if all(close(r, ratios[0][1]) for _, r in ratios):
            k = ratios[0][1]
            if close(k, Fraction(1)):  # equal wherever it was compared: the difference is elsewhere
                return ""
            return f"off by a constant factor: yours is {_fmt_number(k)} times the gradient"
        for cand in _size_factors(self.spec):
            if all(close(w.eval(cand, {}), r) for w, r in ratios):
                return f"off by a factor of {sp.sstr(cand)}: yours is {sp.sstr(cand)} times the gradient"
        return ""

    def tensor_factor(self, value, t, worlds) -> str:
        """yours = derived * s (or / s) for a forward tensor s: a factor forgotten or doubled."""
        spec = self.spec
        cands = []
        for u in spec.tensors.values():
            if u.role == "classes" or not u.axes <= t.axes:
                continue
            for c in (u.symbol, 1 / u.symbol, u.symbol ** 2, u.symbol ** -2):
                cands.append(c)
        for c in cands:
            if self.matches(value / c, t, worlds):  # yours = c * gradient
                if c.is_Pow and c.exp < 0:
                    s = sp.sstr(1 / c)
                    return f"a missing factor {s}: yours is the gradient divided by {s}"
                return f"an extra factor {sp.sstr(c)}: yours is {sp.sstr(c)} times the gradient"
        return ""

    def difference(self, full, derived_full):
        if self._rewrites is None:
            self._rewrites = basis_rewrites(self.spec)
        return closed_form(self.spec, full - derived_full, self._rewrites, {})


def _and(names) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _short(expr, limit=240) -> str:
    text = sp.sstr(expr)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _ratio(a, b):
    a, b = real(a), real(b)
    if isinstance(a, Fraction) and isinstance(b, Fraction):
        return a / b
    return to_mp(a) / to_mp(b)


def _fmt_number(k) -> str:
    if isinstance(k, Fraction):
        return str(k)
    f = Fraction(str(MP.nstr(k, 15))).limit_denominator(1000)
    return str(f) if close(to_mp(f), k) else MP.nstr(k, 6)


def _size_factors(spec):
    out = []
    for a in spec.axis_list:
        for c in (a, 1 / a, a - 1, 1 / (a - 1), a / (a - 1), (a - 1) / a, 2 * a, 1 / (2 * a)):
            out.append(c)
            out.append(-c)
    return out

