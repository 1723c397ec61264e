"""``symbp.derive``: a layer's spec, its chunked backward and its fused closed form."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from symbp import report
from symbp.layers import Layer, load
from symbp.reverse import Chunked, derive_chunked, grad_name
from symbp.simplify import Fused, fuse
from symbp.spec import Spec


@dataclass
class Derivation:
    """Everything symbp knows about one layer's backward pass."""

    layer: Layer
    spec: Spec
    chunked: Chunked
    fused: Fused

    @property
    def name(self) -> str:
        return self.spec.name

    @cached_property
    def chunked_gradients(self) -> dict:
        """``{'dname': expr}`` in backward order: the seeds' exercise 1."""
        return {grad_name(n): e for n, e in self.chunked.statements()}

    @cached_property
    def fused_gradients(self) -> dict:
        """``{'dname': expr}`` for each differentiable input, in saved quantities."""
        return {grad_name(n): e for n, e in self.fused.gradients.items()}

    @cached_property
    def vanishing_paths(self) -> list:
        """``(target, via)`` pairs whose whole contribution simplifies to zero."""
        return [k for k, v in self.fused.path_values.items() if v == 0]

    def text(self) -> str:
        return report.text(self)

    def latex(self) -> str:
        return report.latex_document(self)

    def markdown(self) -> str:
        return report.markdown(self)

    def _repr_latex_(self) -> str:
        return report.latex_math(self)

    def _repr_markdown_(self) -> str:
        return self.markdown()

    def __str__(self) -> str:
        return self.text()


def derive(layer: str, **options) -> Derivation:
    """Derive a built-in layer (by name) or a spec file (by path)."""
    lay = load(layer)
    spec = lay.build(**options)
    ch = derive_chunked(spec)
    return Derivation(lay, spec, ch, fuse(ch))
