"""What a grade hands back: one verdict per answered gradient, and the report of them all.

The report is the grader's only output, so its views live together: ``text()`` is
what ``symbp grade`` prints (one ``dNAME: correct`` / ``dNAME: wrong: ...`` line each),
and in Jupyter it shows as Markdown or LaTeX with the learner's expression, the derived
one and their difference, typeset by the same printer as the lessons.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from symbp.teach.printers import TexPrinter


@dataclass
class Verdict:
    """The grade of one answered gradient."""

    name: str  # the learner's variable
    tensor: str  # the tensor it is the gradient of
    line: int
    correct: bool
    diagnosis: str = ""
    yours: sp.Expr | None = None  # the learner's expression (earlier gradients as symbols)
    derived: sp.Expr | None = None
    difference: sp.Expr | None = None
    notes: list = field(default_factory=list)
    shape: str = ""  # the answer's shape, where it differs from the tensor's
    incoming_is_one: bool = False  # a scalar loss graded with dloss = 1 (the answer never uses it)
    derived_full: sp.Expr | None = field(default=None, repr=False)  # down to the incoming gradient

    def line_text(self) -> str:
        return f"{self.name}: correct" if self.correct else f"{self.name}: wrong: {self.diagnosis}"


class Report:
    """Verdicts in answer order; prints as text, typesets in Jupyter."""

    def __init__(self, layer: str, spec, verdicts: list):
        self.layer = layer
        self.spec = spec
        self.verdicts = verdicts
        self.general_notes: list = []

    @property
    def all_correct(self) -> bool:
        return all(v.correct for v in self.verdicts)

    def __iter__(self):
        return iter(self.verdicts)

    def __len__(self):
        return len(self.verdicts)

    def __getitem__(self, name) -> Verdict:
        for v in self.verdicts:
            if v.name == name:
                return v
        raise KeyError(name)

    def text(self) -> str:
        return "\n".join(v.line_text() for v in self.verdicts) + "\n"

    def notes(self) -> list:
        return self.general_notes + [f"{v.name}: {n}" for v in self.verdicts for n in v.notes]

    def __str__(self) -> str:
        return self.text()

    def _tex(self, e) -> str:
        return TexPrinter(self.spec).doprint(e)

    def _repr_markdown_(self) -> str:
        rows = [f"**symbp grade {self.layer}**: {sum(v.correct for v in self)} of {len(self)} correct", ""]
        rows += [f"- note: {_md(n)}" for n in self.general_notes]
        for v in self.verdicts:
            rows.append(f"- `{v.name}`: " + ("correct" if v.correct else f"wrong: {_md(v.diagnosis)}"))
            if v.yours is not None:
                shape = f" (shape {v.shape})" if v.shape else ""
                rows.append(f"  - yours: ${self._tex(v.yours)}${shape}")
            if v.derived is not None:
                rows.append(f"  - derived: ${self._tex(v.derived)}$")
            if not v.correct and v.difference is not None:
                rows.append(f"  - yours − derived: ${self._tex(v.difference)}$")
            for n in v.notes:
                rows.append(f"  - note: {_md(n)}")
        return "\n".join(rows) + "\n"

    def _repr_latex_(self) -> str:
        lines = []
        for v in self.verdicts:
            name = r"\mathtt{%s}" % v.name.replace("_", r"\_")
            verdict = r"\text{correct}" if v.correct else r"\text{wrong: %s}" % _tex_text(v.diagnosis)
            lines.append(r"%s &: %s" % (name, verdict))
            if v.yours is not None:
                lines.append(r"\text{yours} &= %s" % self._tex(v.yours))
            if v.derived is not None:
                lines.append(r"\text{derived} &= %s" % self._tex(v.derived))
            if not v.correct and v.difference is not None:
                lines.append(r"\text{yours} - \text{derived} &= %s" % self._tex(v.difference))
        return "$$\\begin{aligned}\n" + " \\\\\n".join(lines) + "\n\\end{aligned}$$"


def _md(text: str) -> str:
    """Plain text safe in Markdown (names like bnvar_inv must not turn italic)."""
    return "".join("\\" + ch if ch in "_*`[]<>|" else ch for ch in text)


def _tex_text(text: str) -> str:
    """Plain text safe inside ``\\text{...}``."""
    out = []
    for ch in text:
        if ch in "&%$#_{}":
            out.append("\\" + ch)
        elif ch in "~^\\":
            out.append(r"\textasciitilde{}" if ch == "~" else r"\^{}" if ch == "^" else r"\textbackslash{}")
        else:
            out.append(ch)
    return "".join(out)

