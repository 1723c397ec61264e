"""Line layout for generated modules: within the line limit, then parsed before anything is written.

The template places statements one per line with a trailing comment. A line
over the limit gets its comment on the line above (wrapped as a comment), and a
statement still too long is put in parentheses and broken before its operators
or after its commas, as a person would break it.
"""

from __future__ import annotations

import ast
import re
import textwrap

LIMIT = 110
_STATEMENT = re.compile(r"^(\s*)([A-Za-z_][A-Za-z0-9_]*(?:, [A-Za-z_][A-Za-z0-9_]*)*) = (.*)$")


class LayoutError(ValueError):
    """Rendered source that is not valid Python: a bug in a template or in the lowering."""


def layout(source: str, name: str, limit: int = LIMIT) -> str:
    """``source`` with long statements broken to fit ``limit``; raises if it does not parse."""
    out, in_string = [], False
    for line in source.split("\n"):
        quotes = line.count('"""')
        if in_string or len(line) <= limit or quotes:
            out.append(line)
        else:
            out.extend(_fit(line, limit))
        in_string ^= quotes % 2 == 1
    text = "\n".join(out)
    try:
        ast.parse(text)
    except SyntaxError as e:
        raise LayoutError(f"{name}: generated source does not parse (line {e.lineno}: {e.msg})") from None
    return text


def _fit(line: str, limit: int) -> list:
    code, comment = _split_comment(line)
    indent = code[: len(code) - len(code.lstrip())]
    above = []
    if comment:
        above = textwrap.wrap(comment, limit - len(indent) - 2, initial_indent=f"{indent}# ",
                              subsequent_indent=f"{indent}#   ", break_on_hyphens=False)
    if len(code) <= limit:
        return above + [code]
    m = _STATEMENT.match(code)
    if not m:
        return above + [code]
    pad, target, expr = m.groups()
    inner = pad + " " * 4
    return above + [f"{pad}{target} = ("] + _wrap(expr, limit - len(inner), inner) + [f"{pad})"]


def _split_comment(line: str):
    """``(code, comment text)``: the first ``  # `` outside a string literal starts the comment."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif line.startswith("  # ", i):
            return line[:i].rstrip(), line[i + 4:]
    return line, ""


def _wrap(expr: str, width: int, indent: str) -> list:
    """Breaks before `` + ``, `` - ``, `` @ `` and after ``, ``, at the shallowest bracket depth
    that makes every line fit (greedy within a depth)."""
    points, depth, quote = [], 0, None
    for i, ch in enumerate(expr):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif expr.startswith((" + ", " - ", " @ "), i) and i > 0:
            points.append((i, i + 1, depth))  # the line breaks before the operator
        elif expr.startswith(", ", i):
            points.append((i + 1, i + 2, depth))
    lines = [expr]
    for limit in sorted({d for _, _, d in points}):
        lines, start, current_end = [], 0, None
        for end, resume, d in points:
            if d > limit:
                continue
            if current_end is not None and end - start > width:
                lines.append(expr[start:current_end[0]])
                start = current_end[1]
            current_end = (end, resume)
        if current_end is not None and len(expr) - start > width:
            lines.append(expr[start:current_end[0]])
            start = current_end[1]
        lines.append(expr[start:])
        if all(len(s) <= width for s in lines):
            break
    return [indent + s for s in lines]
