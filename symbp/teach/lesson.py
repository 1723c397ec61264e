"""The lesson model: what a learner reads about a derivation, independent of how it is printed.

:func:`symbp.teach.explain.build` fills these records from the engine's results and every
view (text, LaTeX, Markdown, the graph) prints them, so the views cannot disagree about a
step, its reason or its number. The small wording helpers every view needs (a shape, the
options, the inputs) live here too, so each is written once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from symbp.printing import shape_text

ROLE = {"input": "input", "param": "parameter", "data": "data (not differentiated)"}


class Partial(sp.Function):
    """``Partial(y, x)``: the symbol ∂y/∂x in a chain-rule line (never evaluated)."""

    nargs = 2

    def _sympystr(self, printer):
        return "∂%s/∂%s" % (printer._print(self.args[0]), printer._print(self.args[1]))


@dataclass(frozen=True)
class Label:
    """The left side of a partial gradient: ``adj`` restricted to a path or a consumer."""

    adj: sp.Symbol
    note: str


class Terms(tuple):
    """A sum printed in the order given (one term per path), not SymPy's order."""


def add_terms(terms):
    """One term as itself, several as :class:`Terms` (printed in the order given)."""
    return terms[0] if len(terms) == 1 else Terms(terms)


@dataclass
class Step:
    """One ``= expr`` of a chain, with the reason it holds (names in backticks)."""

    expr: sp.Expr
    reason: str = ""


@dataclass
class Equation:
    """``lhs = chain[0] = chain[1] = ...``, numbered; ``notes`` explain it in words."""

    number: int
    lhs: sp.Expr
    chain: list
    shape: str = ""
    notes: list = field(default_factory=list)
    key: str = ""  # what it is about: a tensor name, 'dname' or an identity
    partials: list = field(default_factory=list)  # (Partial(y, x), value): the local partials used


@dataclass
class Section:
    key: str
    title: str
    intro: list
    equations: list

    @property
    def shown(self) -> bool:
        """Whether a view prints the section: it has equations, or words beyond the first line."""
        return bool(self.equations) or (self.key == "fused" and len(self.intro) > 1)


@dataclass
class Lesson:
    sections: list
    notation: list
    edges: list  # (source, consumer) forward edges, for the graph
    zero_edges: set  # (target, via) whose gradient contribution is zero
    vanishing: list  # (path as tensor names, Equation): paths that carry nothing

    def numbers(self, key: str) -> dict:
        """``{equation.key: number}`` of one section (``'forward'``, ``'backward'``, ``'result'``)."""
        for s in self.sections:
            if s.key == key:
                return {e.key: e.number for e in s.equations}
        return {}


def equation_numbers(d) -> dict:
    """``{'chunked': {'dname': k}, 'fused': {'dname': k}}``: the numbers the generated code cites."""
    lesson = d.lesson
    return {"chunked": lesson.numbers("backward"), "fused": lesson.numbers("result")}


# -- words every view uses ---------------------------------------------------------------------


def ticked(names) -> str:
    """```a`, `b``: names in backticks, comma-separated."""
    return ", ".join(f"`{n}`" for n in names)


def settings_words(d) -> str:
    """The layer's options as ``k=v, ...`` (``none`` without any)."""
    return ", ".join(f"{k}={v}" for k, v in d.spec.settings.items()) or "none"


def input_rows(d) -> list:
    """``(name, words)`` for each argument and option."""
    spec = d.spec
    rows = []
    for t in spec.arguments:
        if t.role == "classes":
            rows.append((t.name, f"{shape_text(t.index_dims)} integer classes; in formulas their "
                                 f"one-hot along {t.class_axis}, shape {shape_text(t.dims)}"))
        else:
            rows.append((t.name, f"{shape_text(t.dims)} {ROLE[t.role]}"))
    for o in spec.options.values():
        rows.append((o.name, f"option (a runtime scalar), default {o.default:g}"))
    return rows
