"""Reading one Python expression of an answer into the element algebra.

An abstract interpreter over the AST: names, numbers, arithmetic with torch's
broadcasting, ``@`` as a contraction, ``.T``, ``x.shape[0]``, comparisons as
``Piecewise`` and the ``[range(n), Yb]`` row index as a one-hot sum. Nothing is
executed, so an answer can be graded without torch and for every batch size.
Calls go on to :mod:`symbp.grading.torch_calls`.
"""

from __future__ import annotations

import ast

import sympy as sp

from symbp.grading.torch_calls import TorchCalls
from symbp.grading.values import (
    GradeError,
    Index,
    MaxResult,
    Module,
    Poison,
    Range,
    Shape,
    ShapeError,
    Val,
    broadcast,
    check_distinct,
    dims_str,
    size_of,
)
from symbp.spec import Sum

COMPARISONS = {ast.Gt: sp.StrictGreaterThan, ast.GtE: sp.GreaterThan, ast.Lt: sp.StrictLessThan,
               ast.LtE: sp.LessThan}


class ExpressionReader(TorchCalls):
    """Expressions to values; :class:`~symbp.grading.reader.Reader` adds names and statements."""

    # -- errors ----------------------------------------------------------
    def fail(self, node, what):
        line = getattr(node, "lineno", self.line)
        raise GradeError(f"{self.filename} line {line}: {what}")

    def row_index(self, node, base, stmt) -> Index:
        if not (isinstance(node, ast.Tuple) and len(node.elts) == 2):
            self.fail(stmt, "only the index [range(n), Yb] is supported")
        rows, cols = (self.value(e) for e in node.elts)
        if not isinstance(rows, Range) or not isinstance(cols, Index):
            self.fail(stmt, "only the index [range(n), Yb] (rows, then class indices) is supported")
        if isinstance(base, Val) and base.dims != tuple(cols.dims) + (cols.axis,):
            self.fail(stmt, f"indexing a {dims_str(base.dims)} tensor with [range(n), class indices] "
                            f"needs shape {dims_str(tuple(cols.dims) + (cols.axis,))}")
        return cols

    # -- expressions -----------------------------------------------------
    def value(self, node):
        try:
            return self._value(node)
        except ShapeError as e:
            line = getattr(node, "lineno", self.line)
            return Poison(f"line {line}: {e}", line)

    def _value(self, node):
        if isinstance(node, ast.Constant):
            return self.constant(node)
        if isinstance(node, ast.Name):
            return self.lookup(node)
        if isinstance(node, ast.UnaryOp):
            v = self._value(node.operand)
            if isinstance(node.op, ast.USub):
                return self.unary(v, lambda e: -e, node)
            if isinstance(node.op, ast.UAdd):
                return v
            self.fail(node, f"operator {type(node.op).__name__} is not supported")
        if isinstance(node, ast.BinOp):
            return self.binop(node.op, self._value(node.left), self._value(node.right), node)
        if isinstance(node, ast.Attribute):
            return self.attribute(self._value(node.value), node.attr, node)
        if isinstance(node, ast.Subscript):
            return self.subscript(node)
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, ast.Tuple):
            return tuple(self._value(e) for e in node.elts)
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in COMPARISONS:
            a, b = self._value(node.left), self._value(node.comparators[0])
            diff = self.binop(ast.Sub(), a, b, node)  # broadcasting as torch does
            if isinstance(diff, Poison):
                return diff
            cond = COMPARISONS[type(node.ops[0])](a.expr, b.expr)
            return Val(sp.Piecewise((1, cond), (0, True)), diff.dims)
        self.fail(node, f"{type(node).__name__} expressions are not supported")

    def constant(self, node):
        v = node.value
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            self.fail(node, f"the constant {v!r} is not a number")
        if isinstance(v, int):
            return Val(sp.Integer(v), ())
        r = sp.Rational(repr(v))
        for o in self.spec.options.values():  # 1e-5 written out is the layer's eps
            if float(o.default) == v and sp.Rational(repr(float(o.default))).q > 64:
                return Val(o.symbol, ())
        return Val(r, ())

    def unary(self, v, f, node):
        if isinstance(v, Poison):
            return v
        if not isinstance(v, Val):
            self.fail(node, "this operand is not a tensor or number")
        return Val(f(v.expr), v.dims)

    def binop(self, op, a, b, node):
        for v in (a, b):
            if isinstance(v, Poison):
                return v
            if not isinstance(v, Val):
                self.fail(node, f"operator {type(op).__name__} on something that is not a tensor or number")
        what = f"line {getattr(node, 'lineno', self.line)}"
        if isinstance(op, ast.MatMult):
            return self.matmul(a, b, node)
        try:
            dims = broadcast(a.dims, b.dims, what)
        except ShapeError as e:
            return Poison(str(e), getattr(node, "lineno", self.line))
        if isinstance(op, ast.Add):
            return Val(a.expr + b.expr, dims)
        if isinstance(op, ast.Sub):
            return Val(a.expr - b.expr, dims)
        if isinstance(op, ast.Mult):
            return Val(a.expr * b.expr, dims)
        if isinstance(op, ast.Div):
            return Val(a.expr / b.expr, dims)
        if isinstance(op, ast.Pow):
            if b.dims or not b.expr.is_number:
                self.fail(node, "only a number can be an exponent (x ** -0.5)")
            return Val(a.expr ** b.expr, dims)
        self.fail(node, f"operator {type(op).__name__} is not supported")

    def matmul(self, a, b, node):
        line = getattr(node, "lineno", self.line)
        if not a.dims or not b.dims or len(a.dims) > 2 or len(b.dims) > 2:
            self.fail(node, "@ is supported between 1-d and 2-d tensors only")
        k1, k2 = a.dims[-1], b.dims[0]
        if k1 != k2:
            hint = ""
            right = ast.unparse(node.right) if isinstance(node, ast.BinOp) else "the right operand"
            left = ast.unparse(node.left) if isinstance(node, ast.BinOp) else "the left operand"
            if len(b.dims) == 2 and b.dims[1] == k1:
                hint = f"; did you mean {right}.T?"
            elif len(a.dims) == 2 and a.dims[0] == k2:
                hint = f"; did you mean {left}.T?"
            return Poison(f"line {line}: matmul {dims_str(a.dims)} @ {dims_str(b.dims)}: inner dims {k1} "
                          f"and {k2} differ{hint}", line)
        body = a.expr * b.expr
        expr = body if k1 == 1 else Sum(k1, body)
        try:
            return Val(expr, check_distinct(tuple(a.dims[:-1]) + tuple(b.dims[1:])))
        except ShapeError as e:
            return Poison(f"line {line}: {e}", line)

    def attribute(self, v, attr, node):
        if isinstance(v, Module):
            return (v, attr)
        if isinstance(v, Poison):
            return v
        if isinstance(v, MaxResult):
            if attr == "values":
                return v.values
            if attr == "indices":
                return v.indices
        if isinstance(v, Val):
            if attr in ("T", "mT"):
                if len(v.dims) > 2:
                    self.fail(node, ".T of a tensor with more than 2 dims")
                return Val(v.expr, tuple(reversed(v.dims)))
            if attr == "shape":
                return Shape(v.dims)
            if attr == "data":
                return v
            return ("method", v, attr)
        if isinstance(v, Index) and attr in ("data",):
            return v
        if isinstance(v, Index) and attr == "shape":
            return Shape(tuple(v.dims))
        self.fail(node, f"attribute .{attr} is not supported here")

    def subscript(self, node):
        base = self._value(node.value)
        if isinstance(base, Shape):
            i = self.int_arg(node.slice, node)
            try:
                a = base.dims[i]
            except IndexError:
                self.fail(node, f"shape index {i} out of range for {dims_str(base.dims)}")
            return size_of(a)
        if isinstance(base, Poison):
            return base
        if isinstance(base, Val):
            idx = self.row_index(node.slice, base, node)
            return Val(Sum(idx.axis, idx.onehot * base.expr), tuple(idx.dims))
        self.fail(node, "this subscript is not supported")

    def int_arg(self, node, where) -> int:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -self.int_arg(node.operand, where)
        self.fail(where, "expected a literal integer (a dim)")

    def position(self, v, dim, node) -> int:
        n = len(v.dims)
        if not -n <= dim < n:
            self.fail(node, f"dim {dim} out of range for shape {dims_str(v.dims)}")
        return dim % n

    def call(self, node):
        func = self._value(node.func)
        args = node.args
        kw = {k.arg: k.value for k in node.keywords}
        if func in ("float", "int") and len(args) == 1:
            return self._value(args[0])
        if func == "len" and len(args) == 1:
            v = self._value(args[0])
            if isinstance(v, (Val, Index)) and v.dims:
                return size_of(v.dims[0])
            self.fail(node, "len() of something that is not a tensor")
        if func == "range":
            if len(args) != 1:
                self.fail(node, "range(n) with one argument only")
            size = self._value(args[0])
            return Range(size.expr if isinstance(size, Val) else size)
        if isinstance(func, tuple) and func and isinstance(func[0], Module):
            return self.library(func[0].name, func[1], args, kw, node)
        if isinstance(func, tuple) and func and func[0] == "method":
            return self.method(func[1], func[2], args, kw, node)
        if isinstance(func, Poison):
            return func
        self.fail(node, "this call is not supported")
