"""What the simplifier did to one expression, one rewrite at a time.

``simplify.closed_form(..., trace=Trace(expr))`` appends a :class:`Rewrite` for every step
that changed the expression: linearity of the sums, identities from the definitions, the
rewriting into saved tensors, and the final tidying. The teaching views print these steps;
they never simplify anything themselves, so the chain a learner reads is the one the engine
took, and its last expression is the engine's result.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp


@dataclass(frozen=True)
class Rewrite:
    """The expression after one step of the simplifier, and the rule that made it.

    ``rule`` is ``'linearity'`` (constants out of each sum), ``'identity'`` (``uses``: the
    sums replaced by their values), ``'saved'`` (``uses``: the ``(pattern, replacement)``
    rules that fired) or ``'tidy'`` (the cheapest equal form).
    """

    expr: sp.Expr
    rule: str
    uses: tuple = ()


@dataclass
class Trace:
    """The steps of one closed form, from ``start``; ``found`` holds the identities found, in order.

    Reductions the rewriting holds as opaque symbols (``thaw``) are written out in every
    recorded expression, and a step that changes nothing once they are written out is left out.
    """

    start: sp.Expr
    thaw: dict = field(default_factory=dict)
    steps: list = field(default_factory=list)
    found: dict = field(default_factory=dict)

    @property
    def result(self) -> sp.Expr:
        return self.steps[-1].expr if self.steps else self.start

    def note(self, rule: str, before, after, uses=None) -> None:
        """Record ``after`` if it differs from ``before``; ``uses`` (called only then) names what was used."""
        if after == before:
            return
        shown = after.xreplace(self.thaw) if self.thaw else after
        if shown == (self.steps[-1].expr if self.steps else self.start.xreplace(self.thaw)):
            return
        self.steps.append(Rewrite(shown, rule, tuple(uses()) if uses else ()))

    def identities_used(self, before, known: int) -> list:
        """The identities visible in ``before``, in the order found (else the ones found since ``known``)."""
        return [k for k in self.found if before.has(k)] or list(self.found)[known:]

    def rules_fired(self, before, rules) -> list:
        """``(pattern, replacement)`` of each rule whose pattern is in ``before``, held reductions aside."""
        held = set(self.thaw)
        return [(k, v) for k, v in rules.items() if v not in held and before.has(k)]
