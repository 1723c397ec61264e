"""The SymPy printers the views share: plain text, and LaTeX that renders the same everywhere.

Math is written so that it renders the same under pdflatex, MathJax (Jupyter, nbconvert) and
KaTeX (code hosts): names are ``\\mathrm{bnvar\\_inv}``, words inside math are plain
``\\text{...}`` holding no macros, and the indicator is ``\\mathbf{1}``. Both printers write
chain-rule products in writing order and a fused result in its readable grouping
(:func:`grouped`), so the text and the typeset views read alike.
"""

from __future__ import annotations

import re

import sympy as sp
from sympy.printing.latex import LatexPrinter
from sympy.printing.str import StrPrinter

from symbp.engine.reverse import grad_name
from symbp.spec import Reduction, Sum
from symbp.teach.lesson import Partial

#: a printed chain line longer than this is broken after a top-level term
WRAP = 160


# -- readable grouping -------------------------------------------------------------------------


def grouped(expr, tensors):
    """``(prefactor, [terms])`` for ``c * (t1 + t2 + ...)``, terms in reading order, or None.

    The engine's ``g*v*(-b*n*S/(n-1) + n*dy - T)/n`` reads as
    ``g*v/n * (n*dy - T - n/(n-1)*b*S)``: plain terms before sums, positive before negative.
    """
    if not isinstance(expr, sp.Mul):
        return None
    brackets = [f for f in expr.args if isinstance(f, sp.Add)]
    if len(brackets) != 1:
        return None
    pre = sp.Mul(*[f for f in expr.args if f is not brackets[0]])
    terms = list(sp.Add.make_args(brackets[0]))

    def key(t):
        reds = sum(1 for a in sp.preorder_traversal(t) if isinstance(a, Reduction))
        return (reds, t.could_extract_minus_sign(), sp.count_ops(t), sp.default_sort_key(t))

    return pre, sorted(terms, key=key)


def _split_coefficient(term, tensors):
    """``(axis-and-number coefficient, rest)`` of a product, e.g. ``n/(n-1)`` and ``bnraw*S``."""
    coeff, rest = [], []
    for f in sp.Mul.make_args(term):
        (rest if f.free_symbols & tensors or f.has(Reduction) else coeff).append(f)
    return sp.Mul(*coeff), sp.Mul(*rest)


def _grouped_terms(printer, expr, times):
    """``(prefactor, [signed terms])`` of ``grouped(expr)``, or the plain print where it does not group."""
    g = grouped(expr, printer.tensors)
    if g is None:
        return printer.doprint(expr)
    pre, terms = g
    out = []
    for i, t in enumerate(terms):
        neg = t.could_extract_minus_sign()
        coeff, rest = _split_coefficient(-t if neg else t, printer.tensors)
        if rest == 1:
            body = printer._print(coeff)
        elif coeff == 1:
            body = printer._print(rest)
        else:
            body = (printer.parenthesize(coeff, 50, strict=True) + times
                    + printer.parenthesize(rest, 50, strict=True))
        out.append(("- " if neg else ("+ " if i else "")) + body)
    return pre, out


def _join_terms(printer, terms) -> str:
    out = []
    for i, t in enumerate(terms):
        neg = isinstance(t, sp.Basic) and not isinstance(t, Sum) and t.could_extract_minus_sign()
        s = printer._print(-t if neg else t)
        if isinstance(t, sp.Add) and not neg:
            s = "(" + s + ")"
        out.append(("- " if neg else ("+ " if i else "")) + s)
    return " ".join(out)


# -- plain text --------------------------------------------------------------------------------


class TextPrinter(StrPrinter):
    """Plain text with ``Σ_n(...)``, ``∂y/∂x`` and the chain-rule products in writing order."""

    def __init__(self, spec):
        super().__init__()
        self.tensors = set(spec._by_symbol)

    def _print_Terms(self, terms):
        return _join_terms(self, terms)

    def _print_Mul(self, expr):
        if any(isinstance(a, Partial) for a in expr.args):
            return "·".join(self.parenthesize(a, 50) for a in expr.args)
        return super()._print_Mul(expr)

    def _print_Label(self, lab):
        return f"{lab.adj}|{lab.note}"

    def _print_Partial(self, e):
        return "∂%s/∂%s" % (self._print(e.args[0]), self._print(e.args[1]))

    def _print_Piecewise(self, e):
        """``(x if x > 0 else 0)``: the first branch whose condition holds, as Python reads it."""
        out = [self._print(b.expr) if b.cond is sp.true else
               f"{self._print(b.expr)} if {self._print(b.cond)} else" for b in e.args]
        if e.args[-1].cond is not sp.true:
            out.append("undefined")
        return "(" + " ".join(out) + ")"

    def grouped(self, expr) -> str:
        out = _grouped_terms(self, expr, "*")
        return out if isinstance(out, str) else f"{self._print(out[0])} * ({' '.join(out[1])})"


# -- LaTeX -------------------------------------------------------------------------------------


def tex_name(name: str) -> str:
    return r"\mathrm{%s}" % name.replace("_", r"\_")


class TexPrinter(LatexPrinter):
    """LaTeX that pdflatex, MathJax and KaTeX all accept (no ``\\mathbb``, no macros in ``\\text``)."""

    printmethod = "_symbp_latex"  # the reductions are printed here, not by their own _latex

    def __init__(self, spec):
        names = {}
        for t in spec.tensors.values():
            names[t.symbol] = tex_name(t.name)
            if t.role != "classes":
                names[spec.adjoint(t.name)] = tex_name(grad_name(t.name))
        for o in spec.options.values():
            names[o.symbol] = r"\varepsilon" if o.name in ("eps", "epsilon") else tex_name(o.name)
        super().__init__({"symbol_names": names, "mul_symbol": "dot"})
        self.names = names
        self.tensors = set(spec._by_symbol)

    def _print(self, expr, **kwargs):
        """Objects that print themselves (``pi``, ``E``, ``sigmoid``, ``softplus``) do; the
        reductions are printed by the methods below (``printmethod`` keeps their ``_latex`` out)."""
        own = getattr(expr, "_latex", None)
        if own is not None and isinstance(expr, sp.Basic) and not isinstance(expr, Reduction):
            return own(self, **kwargs)
        return super()._print(expr, **kwargs)

    def _print_Piecewise(self, e):
        """``\\begin{cases} a & \\text{if } x > 0 \\\\ b & \\text{otherwise} \\end{cases}``."""
        rows = []
        for b in e.args:
            cond = r"\text{otherwise}" if b.cond is sp.true else r"\text{if } " + self._print(b.cond)
            rows.append(self._print(b.expr) + " & " + cond)
        return r"\begin{cases} " + r" \\ ".join(rows) + r" \end{cases}"

    def _body(self, e):
        s = self._print(e)
        if isinstance(e, (sp.Add, sp.Mul)) or e.could_extract_minus_sign():
            s = r"\left(" + s + r"\right)"
        return s

    def _print_Sum(self, e, exp=None):
        tex = r"\sum_{%s} %s" % (self._print(e.axis), self._body(e.body))
        return tex if exp is None else r"\left(%s\right)^{%s}" % (tex, exp)

    def _print_Max(self, e, exp=None):
        tex = r"\max_{%s} %s" % (self._print(e.axis), self._body(e.body))
        return tex if exp is None else r"\left(%s\right)^{%s}" % (tex, exp)

    def _print_ArgmaxMask(self, e):
        b = self._print(e.body)
        return r"\mathbf{1}\left[%s = \max_{%s} %s\right]" % (b, self._print(e.axis), b)

    def _print_Partial(self, e):
        return r"\frac{\partial %s}{\partial %s}" % (self._print(e.args[0]), self._print(e.args[1]))

    def _print_Mul(self, expr):
        if any(isinstance(a, Partial) for a in expr.args):
            return r" \cdot ".join(self.parenthesize(a, 50) for a in expr.args)
        return super()._print_Mul(expr)

    def _print_Terms(self, terms):
        return _join_terms(self, terms)

    def _print_Label(self, lab):
        note = lab.note
        if note.startswith("through "):
            sub = r"\text{through }" + tex_name(note[len("through "):])
        else:
            sub = r"\text{%s}" % note
        return r"\left.%s\right|_{%s}" % (self._print(lab.adj), sub)

    def grouped(self, expr) -> str:
        out = _grouped_terms(self, expr, r" \cdot ")
        return out if isinstance(out, str) else \
            self._print(out[0]) + r" \cdot \left(" + " ".join(out[1]) + r"\right)"

    def lines(self, expr) -> list:
        """``expr`` printed, broken after top-level terms where it is long."""
        whole = self.doprint(expr)
        if len(whole) <= WRAP or not isinstance(expr, sp.Add):
            return [whole]
        rows, cur = [], ""
        for i, t in enumerate(expr.args):
            neg = t.could_extract_minus_sign()
            s = self._print(-t if neg else t)
            piece = ("- " if neg else ("+ " if i else "")) + s
            if cur and len(cur) + len(piece) > WRAP:
                rows.append(cur)
                cur = ""
            cur += (" " if cur else "") + piece
        rows.append(cur)
        return rows


def tex_reason(reason: str) -> str:
    """Words with backticked names as math-mode text that holds no macros inside ``\\text``."""
    out = []
    for i, p in enumerate(reason.split("`")):
        if not p:
            continue
        if i % 2 and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", p):
            out.append(tex_name(p))
        else:
            out.append(_tex_text(p))
    return " ".join(out)


def _tex_text(p: str) -> str:
    """``\\text{...}`` of ``p`` with every character that could be a macro dropped."""
    return r"\text{%s}" % re.sub(r"[^A-Za-z0-9 ,.:;()=+\-/'<>]", "", p)


_TEX_PROSE = {"Σ": r"$\Sigma$", "∂": r"$\partial$", "→": r"$\to$", "½": r"$\frac12$",
              "\\": r"\textbackslash{}",
              "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
              "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def tex_prose(s: str) -> str:
    """Prose for the LaTeX document: backticked names as typewriter text, symbols escaped."""
    out = []
    for i, p in enumerate(s.split("`")):
        esc = "".join(_TEX_PROSE.get(ch, ch) for ch in p)
        out.append(r"\texttt{%s}" % esc if i % 2 else esc)
    return "".join(out)
