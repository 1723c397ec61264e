"""The plain-text view of a lesson, for a terminal (``symbp derive``, ``print(d)``), and the repr.

Each chain prints as ``(k) lhs = rhs    [reason]`` lines lined up on ``=``, with the local
partials under the chain-rule steps; backticks around names are dropped.
"""

from __future__ import annotations

from symbp.engine.reverse import grad_name
from symbp.teach.graph import text_graph
from symbp.teach.lesson import input_rows, settings_words
from symbp.teach.printers import TextPrinter


def text(d) -> str:
    lesson = d.lesson
    p = TextPrinter(d.spec)
    lines = [f"{d.name}: {d.layer.description}", f"options: {settings_words(d)}", "", "How to read this"]
    lines += [f"  - {_plain(n)}" for n in lesson.notation]
    lines += ["", "Inputs"]
    rows = input_rows(d)
    width = max(len(r[0]) for r in rows)
    lines += [f"  {a.ljust(width)}  {b}" for a, b in rows]
    lines += ["", "Graph (gradients flow against the arrows)"]
    lines += ["  " + g for g in text_graph(d)]
    for sec in lesson.sections:
        if not sec.shown:
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


def repr_text(d) -> str:
    """A short plain-text summary (the repr of a Derivation)."""
    spec = d.spec
    grads = ", ".join(grad_name(n) for n in d.fused.gradients)
    return (f"<Derivation {d.name} ({settings_words(d)}): {len(spec.bindings)} bindings, "
            f"{len(d.chunked.order)} chunked gradients, fused {grads}>")
