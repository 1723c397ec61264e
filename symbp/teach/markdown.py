"""The Markdown view: for code hosts (``generated/*.md``) and for Jupyter.

Math uses the rows of the LaTeX view. Code hosts get ```` ```math ```` fences (their Markdown
would eat the backslashes of ``\\_`` and ``\\\\`` inside ``$$``); Jupyter gets ``$$``, which
its Markdown leaves alone. The graph is a Mermaid block. Given the generated module's source,
each equation it implements is followed by the function and line that implement it.
"""

from __future__ import annotations

import re

from symbp.teach.graph import mermaid
from symbp.teach.latex import aligned, tex_rows
from symbp.teach.lesson import input_rows, settings_words
from symbp.teach.printers import TexPrinter


def _fence(rows, flavor) -> list:
    body = aligned(rows)
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
    out = [f"# `{d.name}`: {d.layer.description}", "", f"Options: `{settings_words(d)}`.", "",
           "## How to read this", ""]
    out += [f"- {n}" for n in lesson.notation]
    out += ["", "## Inputs", ""]
    out += [f"- `{a}`: {b}" for a, b in input_rows(d)]
    out += ["", "## The layer as a graph", "",
            "Forward bindings from the inputs to the output; gradients flow against the arrows. "
            "Edge labels say what happens to the gradient on the way back; a dotted edge carries "
            "a gradient of exactly zero.", "", "```mermaid"] + mermaid(d) + ["```"]
    for sec in lesson.sections:
        if not sec.shown:
            continue
        out += ["", f"## {sec.title}", ""] + [w + "\n" for w in sec.intro]
        if sec.key in ("forward", "result"):
            rows = [r for eq in sec.equations for r in tex_rows(p, eq, sec.key)]
            out += _fence(rows, flavor)
            if sec.key == "result" and where:
                out += [f"- ({eq.number}) `{eq.key}`: {_cite(mod, where, 'backward', eq.key)}"
                        for eq in sec.equations if ("backward", eq.key) in where] + [""]
            continue
        for eq in sec.equations:
            title = _md_title(eq, sec.key)
            out += [f"**({eq.number})** {title}", ""]
            out += [n + "\n" for n in eq.notes]
            out += _fence(tex_rows(p, eq, sec.key), flavor)
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
