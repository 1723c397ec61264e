"""The typeset views: a pdflatex document, and display math for Jupyter.

Each chain is one aligned block lined up on ``=``, the reason of each step in a column of
its own (``tex_rows``; the Markdown view uses the same rows). The document (``symbp derive
--format latex``) numbers equations with ``\\tag`` and moves the reasons of long lines onto
a row below them so nothing runs off the page; ``latex_math`` and ``gradients_latex`` are
the ``$$`` blocks a notebook shows for a derivation and its gradients.
"""

from __future__ import annotations

import re
from dataclasses import replace

from symbp.teach.graph import text_graph
from symbp.teach.lesson import input_rows, settings_words
from symbp.teach.printers import TexPrinter, tex_name, tex_prose, tex_reason


def tex_rows(p, eq, kind, document=False) -> list:
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
    tails = []
    for step in eq.chain:
        tail = ""
        if step.reason and len(eq.chain) > 1:
            tail = tex_reason(step.reason)
        elif eq.shape and kind in ("forward", "result"):
            tail = r"\text{scalar}" if eq.shape == "()" else r"\text{%s}" % eq.shape
        tails.append(tail)
    # the reasons' column sits right of the widest line (and the lhs column left of it): below
    # each line when a line and the widest reason would not fit the page side by side
    widest = max([_visible_width(x) for pieces in printed for x in pieces] or [0]) + _visible_width(lhs)
    long = document and (widest > 55 or widest + max(map(_visible_width, tails), default=0) > 80)
    for i, step in enumerate(eq.chain):
        pieces = printed[i]
        tail = tails[i]
        for j, piece in enumerate(pieces):
            if document:
                piece = _fit(piece)
            left = lhs if (i == 0 and j == 0) else ""
            op = "&= " if j == 0 else r"&\qquad "
            end = tail and j == len(pieces) - 1 and not long
            tag = r" \tag{%d}" % eq.number if document and i == 0 and j == 0 else ""
            rows.append(left + " " + op + piece + (r" && " + tail if end else "") + tag)
        if long and tail:
            words = tex_prose(step.reason) if step.reason and len(eq.chain) > 1 else eq.shape
            rows.append(r"&\qquad \parbox[t]{0.7\linewidth}{\small [%s]}" % words)
    return rows


def aligned(rows, sep=" \\\\\n") -> str:
    """``rows`` in one ``aligned`` environment (MathJax and KaTeX both have it)."""
    return "\\begin{aligned}\n" + sep.join(rows) + "\n\\end{aligned}"


def _visible_width(tex: str) -> int:
    """A rough count of the characters a TeX line shows (macro names and braces do not show; a
    product dot with its spacing and a sum sign count two)."""
    tex = re.sub(r"\\(sum|prod)_\{[^}]*\}|\\cdot", "**", tex)
    return len(re.sub(r"\\[A-Za-z]+|[{}^_ ]|\\.", "", tex))


#: Visible characters of a math line that fit the document's text width at 10pt (1.5cm margins).
FITS = 78


def _fit(piece: str) -> str:
    """A line too wide for the page, scaled down to fit (not below half size): one term of a
    sum can be wider than the page, and an overfull line is cut off at the edge."""
    width = _visible_width(piece)
    if width <= FITS:
        return piece
    return r"\scalebox{%.2f}{$\displaystyle %s$}" % (max(0.5, FITS / width), piece)


def latex_document(d) -> str:
    """A complete document that compiles with pdflatex (amsmath, amssymb, graphicx, geometry)."""
    lesson = d.lesson
    p = TexPrinter(d.spec)
    out = [r"\documentclass[10pt]{article}", r"\usepackage{amsmath,amssymb,graphicx}",
           r"\usepackage[margin=1.5cm]{geometry}", r"\allowdisplaybreaks", r"\setlength{\parindent}{0pt}",
           r"\begin{document}", r"\section*{%s}" % tex_prose(f"{d.name}: {d.layer.description}"),
           r"Options: %s." % tex_prose(settings_words(d)), r"\subsection*{How to read this}",
           r"\begin{itemize}"]
    out += [r"\item " + tex_prose(n) for n in lesson.notation]
    out += [r"\end{itemize}", r"\subsection*{Inputs}", r"\begin{itemize}"]
    out += [r"\item \texttt{%s}: %s" % (tex_prose(a), tex_prose(b)) for a, b in input_rows(d)]
    out += [r"\end{itemize}", r"\subsection*{Graph}", "Gradients flow against the arrows.",
            r"\begin{itemize}"]
    out += [r"\item " + tex_prose(g.replace("->", "→")) for g in text_graph(d)]
    out.append(r"\end{itemize}")
    for sec in lesson.sections:
        if not sec.shown:
            continue
        out += [r"\subsection*{%s}" % tex_prose(sec.title)] + [tex_prose(w) + "\n" for w in sec.intro]
        if sec.key == "forward" or sec.key == "result":
            rows = [r for eq in sec.equations for r in tex_rows(p, eq, sec.key, document=True)]
            out += [r"\begin{align*}", " \\\\\n".join(rows), r"\end{align*}"]
            continue
        for eq in sec.equations:
            out += [tex_prose(n) + "\n" for n in eq.notes]
            out += [r"\begin{align*}", " \\\\\n".join(tex_rows(p, eq, sec.key, document=True)),
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
                eq = replace(eq, chain=[eq.chain[0], eq.chain[-1]] if len(eq.chain) > 1 else eq.chain,
                             partials=[])
            rows += tex_rows(p, eq, sec.key)
        body.append(" \\\\\n".join(rows) + r" \\")
    return "$$" + aligned(body, "\n") + "$$"


def gradients_latex(spec, grads: dict) -> str:
    """``{'dname': expr}`` as one aligned display block (Jupyter shows it typeset)."""
    p = TexPrinter(spec)
    return "$$" + aligned([r"%s &= %s" % (tex_name(k), p.doprint(v)) for k, v in grads.items()]) + "$$"
