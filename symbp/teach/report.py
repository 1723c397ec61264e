"""Views of a derivation: plain text (terminal), LaTeX (a PDF), Markdown (code hosts, Jupyter).

All views print the same :class:`~symbp.teach.explain.Lesson`, in the order a
learner reads it: notation, inputs, a graph of the layer, the forward
bindings, each backward step as the chain rule, the identities, the paths
that vanish, the chain of equalities from chunked to fused, and the result.

Math is written so that it renders the same under pdflatex, MathJax (Jupyter,
nbconvert) and KaTeX (code hosts): names are ``\\mathrm{bnvar\\_inv}``, words
inside math are plain ``\\text{...}`` holding no macros, the indicator is
``\\mathbf{1}``, and each chain sits in one ``aligned`` block lined up on
``=``. Code hosts get ```` ```math ```` fences (their Markdown would eat the
backslashes of ``\\_`` and ``\\\\`` inside ``$$``); Jupyter gets ``$$``, which
its Markdown leaves alone.
"""

from __future__ import annotations

import re

import sympy as sp
from sympy.printing.latex import LatexPrinter
from sympy.printing.str import StrPrinter

from symbp.spec import Reduction, Sum
from symbp.teach.explain import Label, Partial, contracted, shape_of

ROLE = {"input": "input", "param": "parameter", "data": "data (not differentiated)"}
#: a printed chain line longer than this is broken after a top-level term
WRAP = 160


def _settings(d) -> str:
    return ", ".join(f"{k}={v}" for k, v in d.spec.settings.items()) or "none"


def _inputs(d) -> list:
    """``(name, words)`` for each argument and option."""
    spec = d.spec
    rows = []
    for t in spec.arguments:
        if t.role == "classes":
            rows.append((t.name, f"{shape_of(t.index_dims)} integer classes; in formulas their "
                                 f"one-hot along {t.class_axis}, shape {shape_of(t.dims)}"))
        else:
            rows.append((t.name, f"{shape_of(t.dims)} {ROLE[t.role]}"))
    for o in spec.options.values():
        rows.append((o.name, f"option (a runtime scalar), default {o.default:g}"))
    return rows


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


# -- printers ----------------------------------------------------------------------------------


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


def _tex_name(name: str) -> str:
    return r"\mathrm{%s}" % name.replace("_", r"\_")


class TexPrinter(LatexPrinter):
    """LaTeX that pdflatex, MathJax and KaTeX all accept (no ``\\mathbb``, no macros in ``\\text``)."""

    printmethod = "_symbp_latex"  # the reductions are printed here, not by their own _latex

    def __init__(self, spec):
        names = {}
        for t in spec.tensors.values():
            names[t.symbol] = _tex_name(t.name)
            if t.role != "classes":
                names[spec.adjoint(t.name)] = _tex_name(spec.adjoint(t.name).name)
        for o in spec.options.values():
            names[o.symbol] = r"\varepsilon" if o.name in ("eps", "epsilon") else _tex_name(o.name)
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
            sub = r"\text{through }" + _tex_name(note[len("through "):])
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


def _tex_reason(reason: str) -> str:
    """Words with backticked names as math-mode text that holds no macros inside ``\\text``."""
    parts = reason.split("`")
    out = []
    for i, p in enumerate(parts):
        if not p:
            continue
        if i % 2:
            out.append(_tex_name(p) if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", p) else _tex_plain_math(p))
        else:
            out.append(r"\text{%s}" % re.sub(r"[^A-Za-z0-9 ,.:;()=+\-/'<>]", "", p))
    return " ".join(out)


def _tex_plain_math(p: str) -> str:
    return r"\text{%s}" % re.sub(r"[^A-Za-z0-9 ,.:;()=+\-/'<>]", "", p)


_TEX_PROSE = {"Σ": r"$\Sigma$", "∂": r"$\partial$", "→": r"$\to$", "½": r"$\frac12$",
              "\\": r"\textbackslash{}",
              "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
              "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _tex_prose(s: str) -> str:
    """Prose for the LaTeX document: backticked names as typewriter text, symbols escaped."""
    out = []
    for i, p in enumerate(s.split("`")):
        esc = "".join(_TEX_PROSE.get(ch, ch) for ch in p)
        out.append(r"\texttt{%s}" % esc if i % 2 else esc)
    return "".join(out)


# -- plain text --------------------------------------------------------------------------------


def text(d) -> str:
    lesson = d.lesson
    p = TextPrinter(d.spec)
    lines = [f"{d.name}: {d.layer.description}", f"options: {_settings(d)}", "", "How to read this"]
    lines += [f"  - {_plain(n)}" for n in lesson.notation]
    lines += ["", "Inputs"]
    rows = _inputs(d)
    width = max(len(r[0]) for r in rows)
    lines += [f"  {a.ljust(width)}  {b}" for a, b in rows]
    lines += ["", "Graph (gradients flow against the arrows)"]
    lines += ["  " + g for g in _text_graph(d)]
    for sec in lesson.sections:
        if not sec.equations and not (sec.key == "fused" and len(sec.intro) > 1):
            continue
        lines += ["", sec.title]
        lines += [f"  {_plain(w)}" for w in sec.intro]
        for eq in sec.equations:
            lines.append("")
            lines += _text_equation(p, eq, sec.key)
    return "\n".join(lines) + "\n"


def _plain(s: str) -> str:
    return s.replace("`", "")


def _text_equation(p, eq, kind) -> list:
    num = f"({eq.number})"
    lhs = p.doprint(eq.lhs)
    head = f"  {num} {lhs}"
    pad = " " * len(head)
    out = []
    for i, step in enumerate(eq.chain):
        last = i == len(eq.chain) - 1
        rhs = p.grouped(step.expr) if (kind == "result" and last) else p.doprint(step.expr)
        reason = f"    [{_plain(step.reason)}]" if step.reason and len(eq.chain) > 1 else ""
        shape = f"    {eq.shape}" if eq.shape and i == 0 and kind in ("forward", "result") else ""
        out.append(f"{head if i == 0 else pad} = {rhs}{shape}{reason}")
    for part, value in eq.partials:
        out.append(f"{pad}   where {p.doprint(part)} = {p.doprint(value)}")
    for n in eq.notes:
        out.append(f"{pad}   {_plain(n)}")
    return out


def _text_graph(d) -> list:
    lesson = d.lesson
    spec = d.spec
    uses = {}
    for src, dst in lesson.edges:
        uses.setdefault(src, []).append(dst)
    out = []
    for t in spec.tensors.values():
        if t.name in uses:
            dsts = []
            for dst in uses[t.name]:
                note = _edge_note(d, t.name, dst)
                dsts.append(dst + (f" [{note}]" if note else ""))
            out.append(f"{t.name} {shape_of(t.dims)} -> " + ", ".join(dsts))
    return out


def _edge_note(d, src, dst) -> str:
    """What happens to the gradient on the edge ``src -> dst``, in words."""
    spec = d.spec
    s, t = spec.tensors[src], spec.tensors[dst]
    if (src, dst) in d.lesson.zero_edges:
        return "gradient 0"
    if s.role == "classes":
        return "data, no gradient"
    notes = []
    extra = sorted(t.axes - s.axes, key=spec.axis_position)
    reds = [r for r in sp.preorder_traversal(t.expr) if isinstance(r, Reduction)
            and s.symbol in r.body.free_symbols and r.__class__.__name__ != "ArgmaxMask"]
    if extra:
        notes.append("summed over " + ", ".join(map(str, extra)) + " on the way back")
    for r in reds:
        if r.__class__.__name__ == "Max":
            notes.append(f"max along {r.axis}: to the arg-max only")
        elif contracted(spec, r, s):
            notes.append(f"contracted along {r.axis}")
        elif r.axis in s.axes:
            notes.append(f"sum along {r.axis}: broadcast back")
    return "; ".join(notes)


# -- LaTeX -------------------------------------------------------------------------------------


def _tex_rows(p, eq, kind, document=False) -> list:
    """Rows of one aligned chain: ``(k)\\quad lhs &= rhs && reason``.

    In the LaTeX document the number is a ``\\tag`` at the margin, and the reason of a long
    line goes on a row of its own below it, so that nothing runs off the page.
    """
    rows = []
    lhs = p.doprint(eq.lhs) if document else r"(%d)\quad " % eq.number + p.doprint(eq.lhs)
    for part, value in eq.partials:
        rows.append(r"%s &= %s && \text{local partial}" % (p.doprint(part), p.doprint(value)))
    printed = [[p.grouped(step.expr)] if (kind == "result" and i == len(eq.chain) - 1) else p.lines(step.expr)
               for i, step in enumerate(eq.chain)]
    # the reasons' column sits right of the widest line: below each line when any is wide
    long = document and any(_visible_width(x) > 55 for pieces in printed for x in pieces)
    for i, step in enumerate(eq.chain):
        pieces = printed[i]
        tail = ""
        if step.reason and len(eq.chain) > 1:
            tail = _tex_reason(step.reason)
        elif eq.shape and kind in ("forward", "result"):
            tail = r"\text{scalar}" if eq.shape == "()" else r"\text{%s}" % eq.shape
        for j, piece in enumerate(pieces):
            left = lhs if (i == 0 and j == 0) else ""
            op = "&= " if j == 0 else r"&\qquad "
            end = tail and j == len(pieces) - 1 and not long
            tag = r" \tag{%d}" % eq.number if document and i == 0 and j == 0 else ""
            rows.append(left + " " + op + piece + (r" && " + tail if end else "") + tag)
        if long and tail:
            words = _tex_prose(step.reason) if step.reason and len(eq.chain) > 1 else eq.shape
            rows.append(r"&\qquad \parbox[t]{0.7\linewidth}{\small [%s]}" % words)
    return rows


def _visible_width(tex: str) -> int:
    """A rough count of the characters a TeX line shows (macro names and braces do not show)."""
    return len(re.sub(r"\\[A-Za-z]+|[{}^_ ]|\\.", "", tex))


def latex_document(d) -> str:
    """A complete document that compiles with pdflatex (amsmath, amssymb, geometry)."""
    lesson = d.lesson
    p = TexPrinter(d.spec)
    out = [r"\documentclass[10pt]{article}", r"\usepackage{amsmath,amssymb}",
           r"\usepackage[margin=1.5cm]{geometry}", r"\allowdisplaybreaks", r"\setlength{\parindent}{0pt}",
           r"\begin{document}", r"\section*{%s}" % _tex_prose(f"{d.name}: {d.layer.description}"),
           r"Options: %s." % _tex_prose(_settings(d)), r"\subsection*{How to read this}", r"\begin{itemize}"]
    out += [r"\item " + _tex_prose(n) for n in lesson.notation]
    out += [r"\end{itemize}", r"\subsection*{Inputs}", r"\begin{itemize}"]
    out += [r"\item \texttt{%s}: %s" % (_tex_prose(a), _tex_prose(b)) for a, b in _inputs(d)]
    out += [r"\end{itemize}", r"\subsection*{Graph}", "Gradients flow against the arrows.",
            r"\begin{itemize}"]
    out += [r"\item " + _tex_prose(g.replace("->", "→")) for g in _text_graph(d)]
    out.append(r"\end{itemize}")
    for sec in lesson.sections:
        if not sec.equations and not (sec.key == "fused" and len(sec.intro) > 1):
            continue
        out += [r"\subsection*{%s}" % _tex_prose(sec.title)] + [_tex_prose(w) + "\n" for w in sec.intro]
        if sec.key == "forward" or sec.key == "result":
            rows = [r for eq in sec.equations for r in _tex_rows(p, eq, sec.key, document=True)]
            out += [r"\begin{align*}", " \\\\\n".join(rows), r"\end{align*}"]
            continue
        for eq in sec.equations:
            out += [_tex_prose(n) + "\n" for n in eq.notes]
            out += [r"\begin{align*}", " \\\\\n".join(_tex_rows(p, eq, sec.key, document=True)),
                    r"\end{align*}"]
    out.append(r"\end{document}")
    return "\n".join(out) + "\n"


def latex_math(d) -> str:
    """The forward pass, the chunked steps and the result as one display block, for ``_repr_latex_``."""
    lesson = d.lesson
    p = TexPrinter(d.spec)
    body = []
    for sec in lesson.sections:
        if sec.key not in ("forward", "backward", "identities", "result") or not sec.equations:
            continue
        body.append(r"&\textbf{%s} \\" % re.sub(r"[^A-Za-z0-9 ,.:]", "", sec.title))
        rows = []
        for eq in sec.equations:
            if sec.key == "backward":  # the chain-rule line and the result, not every rewrite
                eq = _short(eq)
            rows += _tex_rows(p, eq, sec.key)
        body.append(" \\\\\n".join(rows) + r" \\")
    return "$$\\begin{aligned}\n" + "\n".join(body) + "\n\\end{aligned}$$"


def _short(eq):
    from dataclasses import replace

    chain = [eq.chain[0], eq.chain[-1]] if len(eq.chain) > 1 else eq.chain
    return replace(eq, chain=chain, partials=[])


def gradients_latex(spec, grads: dict) -> str:
    """``{'dname': expr}`` as one aligned display block (Jupyter shows it typeset)."""
    p = TexPrinter(spec)
    rows = [r"%s &= %s" % (_tex_name(k), p.doprint(v)) for k, v in grads.items()]
    return "$$\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}$$"


# -- Markdown ----------------------------------------------------------------------------------


def _fence(rows, flavor) -> list:
    body = r"\begin{aligned}" + "\n" + " \\\\\n".join(rows) + "\n" + r"\end{aligned}"
    if flavor == "jupyter":
        return ["$$", body, "$$", ""]
    return ["```math", body, "```", ""]


def markdown(d, flavor: str = "github", code=None) -> str:
    """Markdown for a code host (```` ```math ```` fences) or Jupyter (``$$``).

    ``code=(module_name, source)`` adds, under each equation the generated module implements,
    the function and line that implement it.
    """
    lesson = d.lesson
    p = TexPrinter(d.spec)
    where = code_lines(code[1]) if code else {}
    mod = code[0] if code else ""
    out = [f"# `{d.name}`: {d.layer.description}", "", f"Options: `{_settings(d)}`.", "",
           "## How to read this", ""]
    out += [f"- {n}" for n in lesson.notation]
    out += ["", "## Inputs", ""]
    out += [f"- `{a}`: {b}" for a, b in _inputs(d)]
    out += ["", "## The layer as a graph", "",
            "Forward bindings from the inputs to the output; gradients flow against the arrows. "
            "Edge labels say what happens to the gradient on the way back; a dotted edge carries "
            "a gradient of exactly zero.", "", "```mermaid"] + mermaid(d) + ["```"]
    for sec in lesson.sections:
        if not sec.equations and not (sec.key == "fused" and len(sec.intro) > 1):
            continue
        out += ["", f"## {sec.title}", ""] + [w + "\n" for w in sec.intro]
        if sec.key in ("forward", "result"):
            rows = [r for eq in sec.equations for r in _tex_rows(p, eq, sec.key)]
            out += _fence(rows, flavor)
            if sec.key == "result" and where:
                out += [f"- ({eq.number}) `{eq.key}`: {_cite(mod, where, 'backward', eq.key)}"
                        for eq in sec.equations if ("backward", eq.key) in where] + [""]
            continue
        for eq in sec.equations:
            title = _md_title(eq, sec.key)
            out += [f"**({eq.number})** {title}", ""]
            out += [n + "\n" for n in eq.notes]
            out += _fence(_tex_rows(p, eq, sec.key), flavor)
            if sec.key == "backward" and ("backward_chunked", eq.key) in where:
                out += [f"Code: {_cite(mod, where, 'backward_chunked', eq.key)}.", ""]
    return "\n".join(out).rstrip() + "\n"


def _md_title(eq, kind) -> str:
    if kind == "backward":
        return f"`{eq.key}`, shape `{eq.shape}`"
    if kind == "identities":
        return "An identity"
    if kind == "vanishing":
        return "A path that vanishes"
    if kind == "fused":
        return f"`{eq.key}`, from chunked to fused"
    return ""


def _cite(mod, where, fn, name) -> str:
    line, src = where[(fn, name)]
    return f"`{fn}()` in [`{mod}.py`, line {line}]({mod}.py#L{line}): `{src}`"


def code_lines(source: str) -> dict:
    """``{(function, target): (line number, code)}`` for the assignments of the backward passes."""
    found, fn = {}, None
    for i, line in enumerate(source.splitlines(), 1):
        m = re.match(r"def (\w+)\(", line)
        if m:
            fn = m.group(1)
            continue
        m = re.match(r"    (\w+) = (.*?)(  #.*)?$", line)
        if m and fn in ("backward", "backward_chunked") and (fn, m.group(1)) not in found:
            found[(fn, m.group(1))] = (i, f"{m.group(1)} = {m.group(2)}")
    return found


def mermaid(d) -> list:
    """A Mermaid flowchart of the bindings (code hosts and JupyterLab draw it)."""
    spec = d.spec
    lesson = d.lesson
    out = ["flowchart LR"]
    for t in spec.tensors.values():
        label = f"{t.name} {shape_of(t.dims if t.role != 'classes' else t.index_dims)}"
        shape = {"input": '(["%s"])', "param": '[/"%s"/]', "classes": '[("%s")]',
                 "output": '(("%s"))'}.get(t.role, '["%s"]')
        out.append(f"    t_{t.name}{shape % label}")
    for src, dst in lesson.edges:
        note = _edge_note(d, src, dst).replace('"', "'")
        arrow = "-.->" if (src, dst) in lesson.zero_edges or note.startswith("data") else "-->"
        out.append(f"    t_{src} {arrow}" + (f'|"{note}"|' if note else "") + f" t_{dst}")
    many = [n for n in d.chunked.order if len(d.chunked.contributions[n]) > 1]
    if many:
        out.append("    classDef summed stroke-width:3px")
        out.append("    class " + ",".join(f"t_{n}" for n in many) + " summed")
    return out


def svg(d) -> str:
    """The graph of :func:`mermaid` as a standalone SVG picture (no system packages needed).

    Tensors stand in columns by depth from the inputs; gradients flow against the arrows; a
    dashed edge carries a gradient of exactly zero; a thick border marks a gradient that is a
    sum over several paths.
    """
    from xml.sax.saxutils import escape

    spec, lesson = d.spec, d.lesson
    depth = {}
    for t in spec.bindings:  # longest path from the arguments
        srcs = [u for u, v in lesson.edges if v == t.name and spec.tensors[u].expr is not None]
        depth[t.name] = 1 + max((depth[u] for u in srcs), default=0)
    for t in spec.arguments:  # each argument sits just above its first consumer
        uses = [depth[v] for u, v in lesson.edges if u == t.name]
        depth[t.name] = min(uses, default=1) - 1
    rows = {}
    for t in spec.bindings + spec.arguments:  # the chain of bindings down the left
        rows.setdefault(depth[t.name], []).append(t.name)
    w, h, dx, dy = 170, 32, 210, 86
    pos = {name: (30 + i * dx, 30 + k * dy) for k, names in rows.items() for i, name in enumerate(names)}
    width = max(760, 260 + max(x for x, _ in pos.values()) + w)
    height = 90 + max(y for _, y in pos.values()) + h
    summed = {n for n in d.chunked.order if len(d.chunked.contributions[n]) > 1}
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="12">',
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
           'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>',
           f'<rect width="{width}" height="{height}" fill="white"/>']
    for src, dst in lesson.edges:
        (x1, y1), (x2, y2) = pos[src], pos[dst]
        x1, y1, x2, y2 = x1 + w / 2, y1 + h, x2 + w / 2, y2
        note = _edge_note(d, src, dst)
        zero = (src, dst) in lesson.zero_edges or note.startswith("data")
        style = ' stroke-dasharray="5,4"' if zero else ""
        colour = "#c0392b" if (src, dst) in lesson.zero_edges else "#555"
        span = depth[dst] - depth[src]
        bend = w / 2 + 30 * span if span > 1 else 0  # around the tensors in between
        out.append(f'<path d="M{x1},{y1} C{x1 + bend},{y1 + dy / 2} {x2 + bend},{y2 - dy / 2} {x2},{y2}" '
                   f'fill="none" stroke="{colour}"{style} marker-end="url(#arrow)"/>')
        if note and not note.startswith("data"):
            # near the source end, where edges into the same tensor have not met yet
            lx, ly = x1 + max(0.25 * (x2 - x1), 0) + 0.5 * bend + 6, y1 + 0.35 * (y2 - y1) + 4
            out.append(f'<text x="{lx}" y="{ly}" font-size="10" fill="{colour}">{escape(note)}</text>')
    for t in spec.tensors.values():
        x, y = pos[t.name]
        fill = {"input": "#e8f1fb", "param": "#eaf7ea", "classes": "#f4f4f4", "output": "#fdf2e3"}.get(
            t.role, "#ffffff")
        border = 3 if t.name in summed else 1
        out.append(f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="8" fill="{fill}" stroke="#333" '
                   f'stroke-width="{border}"/>')
        dims = shape_of(t.index_dims if t.role == "classes" else t.dims)
        out.append(f'<text x="{x + w / 2}" y="{y + h / 2 + 4}" text-anchor="middle">'
                   f'{escape(t.name)} {escape(dims)}</text>')
    legend = [f"{d.name}: gradients flow against the arrows.", "Dashed red: a gradient of exactly zero; "
              "dashed grey: data (no gradient); thick border: a gradient summed over several paths."]
    for i, line in enumerate(legend):
        y = height - 34 + 16 * i
        out.append(f'<text x="30" y="{y}" font-size="11" fill="#333">{escape(line)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def equation_numbers(d) -> dict:
    """``{'chunked': {'dname': k}, 'fused': {'dname': k}}``: the numbers the generated code cites."""
    lesson = d.lesson
    return {"chunked": lesson.numbers("backward"), "fused": lesson.numbers("result")}


def repr_text(d) -> str:
    """A short plain-text summary (the repr of a Derivation)."""
    spec = d.spec
    grads = ", ".join(spec.adjoint(n).name for n in d.fused.gradients)
    return (f"<Derivation {d.name} ({_settings(d)}): {len(spec.bindings)} bindings, "
            f"{len(d.chunked.order)} chunked gradients, fused {grads}>")


__all__ = ["text", "latex_document", "latex_math", "markdown", "mermaid", "equation_numbers",
           "gradients_latex", "repr_text", "Label", "Sum"]
