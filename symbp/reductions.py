"""The spec language's reductions: ``Sum`` and ``Max`` along one axis, and ``Max``'s adjoint mask.

They are opaque to SymPy (it never sums or differentiates through them): the
engine decides what a reduction's gradient is. Layer files import them from
``symbp.spec``.
"""

from __future__ import annotations

import sympy as sp

from symbp.errors import SpecError


class Reduction(sp.Function):
    """An opaque reduction ``R(axis, expr)``: SymPy never looks inside."""

    nargs = 2

    @property
    def axis(self) -> sp.Symbol:
        return self.args[0]

    @property
    def body(self) -> sp.Expr:
        return self.args[1]

    def _eval_is_real(self):
        return self.body.is_real

    def _eval_derivative(self, s):  # the engine replaces reductions before diff
        raise SpecError(f"internal: differentiate {self} through the engine, not sympy.diff")


class Sum(Reduction):
    """``Sum(axis, e)``: e summed along ``axis`` (the size-one dim is kept)."""

    @classmethod
    def eval(cls, axis, body):
        if body == 0:  # structural: asking SymPy's assumptions here costs most of a derivation
            return sp.S.Zero
        return None

    def _eval_is_nonnegative(self):
        return self.body.is_nonnegative

    def _eval_is_positive(self):
        return self.body.is_positive

    def _latex(self, printer, exp=None):
        body = printer._print(self.body)
        if isinstance(self.body, sp.Add):
            body = r"\left(" + body + r"\right)"
        tex = r"\sum_{%s} %s" % (printer._print(self.axis), body)
        return tex if exp is None else r"\left(%s\right)^{%s}" % (tex, exp)

    def _sympystr(self, printer):
        return "Σ_%s(%s)" % (printer._print(self.axis), printer._print(self.body))


class Max(Reduction):
    """``Max(axis, e)``: the maximum along ``axis``; its adjoint goes to the argmax."""

    def _latex(self, printer, exp=None):
        tex = r"\max_{%s} %s" % (printer._print(self.axis), printer._print(self.body))
        return tex if exp is None else r"\left(%s\right)^{%s}" % (tex, exp)

    def _sympystr(self, printer):
        return "max_%s(%s)" % (printer._print(self.axis), printer._print(self.body))


class ArgmaxMask(Reduction):
    """1 where ``e`` is its maximum along ``axis``, else 0: the local derivative of Max."""

    def _eval_is_nonnegative(self):
        return True

    def _latex(self, printer):
        return r"\mathbb{1}\left[%s = \max_{%s} %s\right]" % (
            printer._print(self.body), printer._print(self.axis), printer._print(self.body))

    def _sympystr(self, printer):
        return "argmax_mask_%s(%s)" % (printer._print(self.axis), printer._print(self.body))
