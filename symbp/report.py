"""Views of a derivation: plain text (terminal), LaTeX (amsmath) and Markdown.

Every view has the same sections, in the order a person reads them: the
forward bindings, the gradient of each intermediate in backward order, the
identities the simplifier found from the bindings, the paths that contribute
exactly zero, and the fused closed forms.
"""

from __future__ import annotations

import sympy as sp
from sympy.printing.latex import LatexPrinter
from sympy.printing.str import StrPrinter

ROLE = {"input": "input", "param": "parameter", "data": "data (not differentiated)"}


def _dims(dims) -> str:
    return "(" + ", ".join(str(a) for a in dims) + ("," if len(dims) == 1 else "") + ")" if dims else "scalar"


def _settings(d) -> str:
    return ", ".join(f"{k}={v}" for k, v in d.spec.settings.items()) or "none"


def _sections(d):
    """The shared structure: (title, [(lhs, expr, note)])."""
    spec = d.spec
    args = [(t.symbol, None, f"{_dims(t.index_dims)} integer classes, one-hot along {t.class_axis}"
             if t.role == "classes" else f"{_dims(t.dims)} {ROLE[t.role]}") for t in spec.arguments]
    opts = [(o.symbol, None, f"option, default {o.default:g}") for o in spec.options.values()]
    fwd = [(t.symbol, t.expr, _dims(t.dims) + (" output" if t.role == "output" else ""))
           for t in spec.bindings]
    out = spec.output_tensor
    back = [(spec.adjoint(n), e, "") for n, e in d.chunked.statements()]
    ids = [(i.lhs, i.rhs, "") for i in d.fused.identities]
    zero = [(spec.adjoint(t), sp.S.Zero, f"the part through {via}") for t, via in d.vanishing_paths]
    fused = [(spec.adjoint(n), e, "") for n, e in d.fused.gradients.items()]
    saved = ", ".join(spec.saved)
    return [
        ("Inputs", args + opts),
        ("Forward", fwd),
        (f"Backward, one intermediate at a time (d{out.name} is the incoming gradient)", back),
        ("Identities found from the bindings", ids),
        ("Paths that contribute exactly zero", zero),
        (f"Fused closed form (saved: {saved})", fused),
    ]


def text(d) -> str:
    p = StrPrinter()
    lines = [f"{d.name}: {d.layer.description}", f"options: {_settings(d)}"]
    for title, rows in _sections(d):
        if not rows:
            continue
        lines += ["", title]
        width = max(len(p.doprint(lhs)) for lhs, _, _ in rows)
        for lhs, rhs, note in rows:
            left = p.doprint(lhs).ljust(width)
            if rhs is None:
                lines.append(f"  {left}  {note}")
            else:
                tail = f"    [{note}]" if note else ""
                lines.append(f"  {left} = {p.doprint(rhs)}{tail}")
    return "\n".join(lines) + "\n"


def latex_printer(spec) -> LatexPrinter:
    names = {}
    for t in spec.tensors.values():
        names[t.symbol] = r"\mathrm{%s}" % t.name.replace("_", r"\_")
        if t.role != "classes":
            names[spec.adjoint(t.name)] = r"d\mathrm{%s}" % t.name.replace("_", r"\_")
    for o in spec.options.values():
        names[o.symbol] = r"\varepsilon" if o.name in ("eps", "epsilon") else \
            r"\mathrm{%s}" % o.name.replace("_", r"\_")
    return LatexPrinter({"symbol_names": names, "mul_symbol": "dot"})


def _tex_escape(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$"),
                 ("#", r"\#"), ("_", r"\_"), ("{", r"\{"), ("}", r"\}"),
                 ("~", r"\textasciitilde{}"), ("^", r"\textasciicircum{}")):
        s = s.replace(a, b) if a != "\\" else s.replace(a, "\0")
    return s.replace("\0", r"\textbackslash{}")


def _tex_rows(d):
    p = latex_printer(d.spec)
    for title, rows in _sections(d):
        if not rows:
            continue
        eqs = []
        for lhs, rhs, note in rows:
            tag = r" && \text{%s}" % _tex_escape(note) if note else ""
            if rhs is None:
                eqs.append(r"%s%s" % (p.doprint(lhs), tag))
            else:
                eqs.append(r"%s &= %s%s" % (p.doprint(lhs), p.doprint(rhs), tag))
        yield title, eqs


def latex_document(d) -> str:
    """A complete document that compiles with amsmath and amssymb."""
    out = [r"\documentclass{article}", r"\usepackage{amsmath,amssymb}",
           r"\usepackage[margin=2cm]{geometry}", r"\begin{document}",
           r"\section*{%s}" % _tex_escape(f"{d.name}: {d.layer.description}"),
           r"Options: %s." % _tex_escape(_settings(d))]
    for title, eqs in _tex_rows(d):
        out += [r"\subsection*{%s}" % _tex_escape(title), r"\begin{align*}",
                " \\\\\n".join(eqs), r"\end{align*}"]
    out.append(r"\end{document}")
    return "\n".join(out) + "\n"


def latex_math(d) -> str:
    """One display block, for Jupyter's ``_repr_latex_``."""
    body = []
    for title, eqs in _tex_rows(d):
        body.append(r"\textbf{%s} \\" % _tex_escape(title))
        body.append(" \\\\\n".join(eqs) + r" \\")
    return "$$\\begin{aligned}\n" + "\n".join(body) + "\n\\end{aligned}$$"


def markdown(d) -> str:
    """Markdown with ``$$`` display math, one equation per block (renders on code hosts)."""
    out = [f"# `{d.name}`: {d.layer.description}", "", f"Options: `{_settings(d)}`."]
    for title, eqs in _tex_rows(d):
        out += ["", f"## {title}", ""]
        for eq in eqs:
            out += ["$$", r"\begin{aligned}" + eq + r"\end{aligned}", "$$", ""]
    return "\n".join(out).rstrip() + "\n"
