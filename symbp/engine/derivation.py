"""``symbp.derive``: a layer's spec, its chunked backward and its fused closed form."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from symbp.engine.reverse import Chunked, derive_chunked, grad_name
from symbp.engine.simplify import Fused, fuse
from symbp.layers import Layer, load
from symbp.spec import Spec
from symbp.teach.printers import TextPrinter
from symbp.teach.text import repr_text, text


@dataclass
class Derivation:
    """Everything symbp knows about one layer's backward pass, and how the engine got there.

    The record of each step lives with the results: ``chunked.contributions`` keep each
    chain-rule term before linearity and its local partial, ``fused.traces`` and
    ``fused.path_traces`` every rewrite of the closed forms (``engine.trace``). The
    lesson prints them.
    """

    layer: Layer
    spec: Spec
    chunked: Chunked
    fused: Fused

    @property
    def name(self) -> str:
        return self.spec.name

    @cached_property
    def chunked_gradients(self) -> Gradients:
        """``{'dname': expr}`` in backward order: the seeds' exercise 1."""
        return Gradients(self.spec, {grad_name(n): e for n, e in self.chunked.statements()})

    @cached_property
    def fused_gradients(self) -> Gradients:
        """``{'dname': expr}`` for each differentiable input, in saved quantities."""
        return Gradients(self.spec, {grad_name(n): e for n, e in self.fused.gradients.items()})

    @cached_property
    def lesson(self):
        """The step-by-step explanation every view prints (``symbp.teach.explain``)."""
        from symbp.teach import explain

        return explain.build(self)

    @cached_property
    def vanishing_paths(self) -> list:
        """``(target, via)`` pairs whose whole contribution simplifies to zero."""
        return [k for k, v in self.fused.path_values.items() if v == 0]

    def text(self) -> str:
        return text(self)

    # the LaTeX, Markdown and SVG views are imported when asked for: `symbp derive` prints one view
    def latex(self) -> str:
        from symbp.teach.latex import latex_document

        return latex_document(self)

    def markdown(self, flavor: str = "github") -> str:
        """Markdown with ```` ```math ```` fences (code hosts) or, with ``flavor='jupyter'``, ``$$``."""
        from symbp.teach.markdown import markdown

        return markdown(self, flavor)

    def svg(self) -> str:
        """The layer's graph as an SVG picture, gradients flowing against the arrows."""
        from symbp.teach.graph import svg

        return svg(self)

    def _repr_latex_(self) -> str:
        from symbp.teach.latex import latex_math

        return latex_math(self)

    def _repr_markdown_(self) -> str:
        return self.markdown("jupyter")

    def __str__(self) -> str:
        return self.text()

    def __repr__(self) -> str:
        return repr_text(self)

    def _repr_pretty_(self, p, cycle) -> None:  # IPython's plain-text view: short, not the dataclass
        p.text(repr(self))


class Gradients(dict):
    """``{'dname': sympy expression}`` that Jupyter shows typeset with the layer's names.

    The values stay plain SymPy expressions in the spec's symbols (compare, substitute,
    lambdify as usual); ``show(name)`` typesets one of them.
    """

    def __init__(self, spec, items):
        super().__init__(items)
        self._spec = spec

    def _repr_latex_(self) -> str:
        from symbp.teach.latex import gradients_latex

        return gradients_latex(self._spec, self)

    def show(self, name: str) -> Formula:
        """One gradient, typeset in Jupyter and printed as ``dname = ...`` elsewhere."""
        return Formula(self._spec, name, self[name])


class Formula:
    """``name = expr`` that displays as typeset math in Jupyter."""

    def __init__(self, spec, name, expr):
        self.spec, self.name, self.expr = spec, name, expr

    def _repr_latex_(self) -> str:
        from symbp.teach.latex import gradients_latex

        return gradients_latex(self.spec, {self.name: self.expr})

    def __repr__(self) -> str:
        return f"{self.name} = {TextPrinter(self.spec).grouped(self.expr)}"


def derive(layer: str, **options) -> Derivation:
    """Derive a built-in layer (by name) or a spec file (by path)."""
    lay = load(layer)
    spec = lay.build(**options)
    ch = derive_chunked(spec)
    return Derivation(lay, spec, ch, fuse(ch))
