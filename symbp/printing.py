"""How symbp writes shapes and expressions for people: in comments, lessons and messages."""

from __future__ import annotations

import sympy as sp


def shape_text(dims) -> str:
    """A shape as Python writes a tuple: ``(n, d)``, ``(d,)``, ``()``."""
    return "(" + ", ".join(str(a) for a in dims) + ("," if len(dims) == 1 else "") + ")"


class PositiveFirst:
    """Printer mixin: SymPy's term order, but a positive term first (``x - mu``, not ``-mu + x``)."""

    def _print_Add(self, e, order=None):
        from sympy.printing.precedence import PRECEDENCE

        terms = self._as_ordered_terms(e, order=order)
        first = next((t for t in terms if not t.could_extract_minus_sign()), None)
        if first is None or first is terms[0]:
            return super()._print_Add(e, order=order)
        code = self._print(first)
        for t in terms:
            if t is first:
                continue
            if t.could_extract_minus_sign():
                code += " - " + self.parenthesize(-t, PRECEDENCE["Add"], strict=True)
            else:
                code += " + " + self.parenthesize(t, PRECEDENCE["Add"])
        return code


class _HumanStr(PositiveFirst, sp.printing.str.StrPrinter):
    pass


def human(expr) -> str:
    """``str(expr)`` with a positive term first: how a binding reads in a comment."""
    return _HumanStr().doprint(expr)
