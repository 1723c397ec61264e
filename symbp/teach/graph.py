"""The layer as a graph: tensors joined by the forward edges, in text, Mermaid and SVG.

Every view shows the same edges (``Lesson.edges``) with the same note on each: what happens
to the gradient on the way back (summed over an axis, contracted, broadcast, only to the
arg-max, or exactly zero). Gradients flow against the arrows.
"""

from __future__ import annotations

import sympy as sp

from symbp.printing import shape_text
from symbp.spec import Reduction
from symbp.teach.chain_rule import contracted


def edge_note(d, src, dst) -> str:
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


def text_graph(d) -> list:
    """One line per tensor that is used: ``name (shape) -> consumer [note], ...``."""
    uses = {}
    for src, dst in d.lesson.edges:
        uses.setdefault(src, []).append(dst)
    out = []
    for t in d.spec.tensors.values():
        if t.name in uses:
            dsts = []
            for dst in uses[t.name]:
                note = edge_note(d, t.name, dst)
                dsts.append(dst + (f" [{note}]" if note else ""))
            out.append(f"{t.name} {shape_text(t.dims)} -> " + ", ".join(dsts))
    return out


def _summed(d) -> list:
    """Tensors whose gradient is a sum over several paths (drawn with a thick border)."""
    return [n for n in d.chunked.order if len(d.chunked.contributions[n]) > 1]


def mermaid(d) -> list:
    """A Mermaid flowchart of the bindings (code hosts and JupyterLab draw it)."""
    spec = d.spec
    lesson = d.lesson
    out = ["flowchart LR"]
    for t in spec.tensors.values():
        label = f"{t.name} {shape_text(t.dims if t.role != 'classes' else t.index_dims)}"
        shape = {"input": '(["%s"])', "param": '[/"%s"/]', "classes": '[("%s")]',
                 "output": '(("%s"))'}.get(t.role, '["%s"]')
        out.append(f"    t_{t.name}{shape % label}")
    for src, dst in lesson.edges:
        note = edge_note(d, src, dst).replace('"', "'")
        arrow = "-.->" if (src, dst) in lesson.zero_edges or note.startswith("data") else "-->"
        out.append(f"    t_{src} {arrow}" + (f'|"{note}"|' if note else "") + f" t_{dst}")
    many = _summed(d)
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
    summed = set(_summed(d))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="12">',
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
           'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>',
           f'<rect width="{width}" height="{height}" fill="white"/>']
    for src, dst in lesson.edges:
        (x1, y1), (x2, y2) = pos[src], pos[dst]
        x1, y1, x2, y2 = x1 + w / 2, y1 + h, x2 + w / 2, y2
        note = edge_note(d, src, dst)
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
        dims = shape_text(t.index_dims if t.role == "classes" else t.dims)
        out.append(f'<text x="{x + w / 2}" y="{y + h / 2 + 4}" text-anchor="middle">'
                   f'{escape(t.name)} {escape(dims)}</text>')
    legend = [f"{d.name}: gradients flow against the arrows.", "Dashed red: a gradient of exactly zero; "
              "dashed grey: data (no gradient); thick border: a gradient summed over several paths."]
    for i, line in enumerate(legend):
        y = height - 34 + 16 * i
        out.append(f'<text x="30" y="{y}" font-size="11" fill="#333">{escape(line)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
