"""What a learner's expression reads as, and torch's shape rules over it.

The reader never runs the answer; every name and expression becomes one of the
small values here (a tensor as an element expression plus its exact dims, class
indices, a ``.shape``, a module, ...). A shape error does not stop the reading:
it becomes a :class:`Poison` that the line's verdict reports, so one bad line
does not hide the grades of the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from symbp.errors import SymbpError
from symbp.printing import shape_text


class GradeError(SymbpError, ValueError):
    """An answer that cannot be read: one line naming its line and construct."""


@dataclass
class Val:
    """A tensor value: its element expression and dims (axes or 1, storage order)."""

    expr: sp.Expr
    dims: tuple


@dataclass
class Poison:
    """A value whose computation is a shape error; grading it reports the error."""

    message: str
    line: int


@dataclass
class Index:
    """Integer indices: class targets (a spec ``classes`` tensor) or an argmax."""

    dims: tuple  # dims of the integer tensor
    axis: sp.Symbol  # the axis the indices point along
    onehot: sp.Expr  # the one-hot encoding as an element expression


@dataclass
class MaxResult:
    values: Val
    indices: Index


@dataclass
class Shape:
    dims: tuple


@dataclass
class Module:
    name: str  # "torch" or "F"


@dataclass
class Range:
    size: sp.Expr


@dataclass
class Assignment:
    """One graded name: the learner's variable and the tensor whose gradient it is."""

    name: str
    tensor: str
    line: int
    versions: list = field(default_factory=list)  # version symbols, in order


class ShapeError(Exception):
    """A torch shape error met while reading; caught and turned into a :class:`Poison`."""


def dims_str(dims) -> str:
    """``(n, 1)``, ``(d,)`` or ``scalar``: a shape as the messages write it."""
    return shape_text(dims) if dims else "scalar"


def size_of(axis) -> Val:
    """The length of one dim as a number: ``n`` for an axis, 1 for a kept dim."""
    return Val(sp.Integer(1) if axis == 1 else axis, ())


def broadcast(a: tuple, b: tuple, what: str) -> tuple:
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        x = a[-i] if i <= len(a) else 1
        y = b[-i] if i <= len(b) else 1
        if x == y or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        else:
            raise ShapeError(f"{what}: shapes {dims_str(a)} and {dims_str(b)} do not broadcast")
    return check_distinct(tuple(reversed(out)))


def check_distinct(dims: tuple) -> tuple:
    axes = [a for a in dims if a != 1]
    if len(set(axes)) != len(axes):
        raise ShapeError(f"shape {dims_str(dims)} has an axis twice")
    return dims
