"""The torch vocabulary of an answer: reductions, methods and ``torch``/``F`` functions.

Each call the exercise notebooks use (``.sum(0, keepdim=True)``, ``.var``, ``.max(1)``,
``.view(-1)``, ``F.softmax``, ``F.one_hot``, ``torch.where``, ...) is translated into the
element algebra with torch's exact shape rules, so a ``keepdim`` forgotten or a reshape
that merges axes is seen as such. Kept apart from the expression walker because it
is a table of torch's API, which grows as learners write new idioms.
"""

from __future__ import annotations

import ast

import sympy as sp

from symbp.grading.values import Index, MaxResult, Poison, Range, Shape, Val, check_distinct, size_of
from symbp.spec import ArgmaxMask, Max, Sum

REDUCING_METHODS = ("sum", "mean", "var")
NOOP_METHODS = ("clone", "detach", "float", "double", "contiguous")
ELEMENTWISE = {"exp": sp.exp, "log": sp.log, "tanh": sp.tanh, "sqrt": sp.sqrt, "abs": sp.Abs,
               "sin": sp.sin, "cos": sp.cos, "erf": sp.erf,
               "sigmoid": lambda x: 1 / (1 + sp.exp(-x)), "relu": lambda x: sp.Max(x, 0),
               "softplus": lambda x: sp.log(1 + sp.exp(x))}


class TorchCalls:
    """Methods and library functions, for :class:`~symbp.grading.expressions.ExpressionReader`.

    A mixin: it reads arguments with the reader's ``_value``, ``binop``, ``attribute``,
    ``int_arg`` and ``position``, and reports with its ``fail``.
    """

    def dims_of(self, args, kw, node, v):
        """The dims argument of a reduction: positions, or None for all."""
        spec = args[0] if args else kw.get("dim", kw.get("axis"))
        if spec is None:
            return None
        if isinstance(spec, ast.Tuple):
            return sorted({self.position(v, self.int_arg(e, node), node) for e in spec.elts})
        return [self.position(v, self.int_arg(spec, node), node)]

    def keepdim(self, kw, node):
        flag = kw.get("keepdim", kw.get("keepdims"))
        if flag is None:
            return False
        if isinstance(flag, ast.Constant) and isinstance(flag.value, bool):
            return flag.value
        self.fail(node, "keepdim must be True or False")

    def reduce(self, v, kind, args, kw, node):
        positions = self.dims_of(args, kw, node, v)
        if positions is None:
            positions = list(range(len(v.dims)))
        keep = self.keepdim(kw, node)
        expr = v.expr
        dims = list(v.dims)
        for p in positions:
            a = v.dims[p]
            if kind == "var":
                unbiased = kw.get("unbiased")
                corr = kw.get("correction")
                biased = (isinstance(unbiased, ast.Constant) and unbiased.value is False) or (
                    isinstance(corr, ast.Constant) and corr.value == 0)
                size = size_of(a).expr
                mean = expr if a == 1 else Sum(a, expr) / a
                sq = (expr - mean) ** 2
                expr = (sq if a == 1 else Sum(a, sq)) / (size if biased else size - 1)
            elif a != 1:
                expr = Sum(a, expr) if kind == "sum" else Sum(a, expr) / a
            dims[p] = 1
        if not keep:
            dims = [d for i, d in enumerate(dims) if i not in positions]
        return Val(expr, tuple(dims))

    def method(self, v, name, args, kw, node):
        if name in REDUCING_METHODS:
            return self.reduce(v, name, args, kw, node)
        if name in NOOP_METHODS:
            return v
        if name in ELEMENTWISE:
            return Val(ELEMENTWISE[name](v.expr), v.dims)
        if name == "rsqrt":
            return Val(v.expr ** sp.Rational(-1, 2), v.dims)
        if name == "square":
            return Val(v.expr ** 2, v.dims)
        if name == "pow":
            e = self._value(args[0])
            return self.binop(ast.Pow(), v, e, node)
        if name == "t":
            return self.attribute(v, "T", node)
        if name in ("max", "amax", "argmax"):
            return self.maximum(v, name, args, kw, node)
        if name in ("unsqueeze", "squeeze"):
            p = self.int_arg(args[0], node) if args else None
            dims = list(v.dims)
            if name == "unsqueeze":
                dims.insert(p % (len(dims) + 1), 1)
            elif p is None:
                dims = [d for d in dims if d != 1]
            elif dims[self.position(v, p, node)] == 1:
                dims.pop(self.position(v, p, node))
            return Val(v.expr, tuple(dims))
        if name in ("view", "reshape", "flatten"):
            return self.reshape(v, name, args, node)
        if name == "transpose":
            if len(args) != 2 or len(v.dims) != 2:
                self.fail(node, ".transpose(0, 1) of a 2-d tensor only")
            return self.attribute(v, "T", node)
        if name in ("matmul", "mm"):
            return self.binop(ast.MatMult(), v, self._value(args[0]), node)
        if name == "size":
            if not args:
                return Shape(v.dims)
            a = v.dims[self.position(v, self.int_arg(args[0], node), node)]
            return size_of(a)
        self.fail(node, f"the method .{name}() is not supported")

    def reshape(self, v, name, args, node):
        """``.view``/``.reshape``/``.flatten`` that only add or drop size-one dims."""
        axes = [a for a in v.dims if a != 1]
        if name == "flatten":
            if len(axes) > 1:
                self.fail(node, ".flatten() of a tensor with more than one axis is not supported")
            return Val(v.expr, tuple(axes) or (1,))
        items = args
        if len(args) == 1 and isinstance(args[0], ast.Tuple):
            items = args[0].elts
        want = []
        for item in items:
            if isinstance(item, ast.Constant) or isinstance(item, ast.UnaryOp):
                want.append(self.int_arg(item, node))
            else:
                size = self._value(item)
                if isinstance(size, Shape):
                    want.extend(size.dims)
                    continue
                if not isinstance(size, Val) or size.dims:
                    self.fail(node, f".{name}() with this size is not supported")
                want.append(size.expr)
        rest = list(axes)
        out = []
        for w in want:
            if w == 1:
                out.append(1)
            elif w == -1:
                continue
            elif rest and w == rest[0]:
                out.append(rest.pop(0))
            else:
                self.fail(node, f".{name}() that changes more than size-one dims is not supported")
        if -1 in want:
            if len(rest) > 1:
                self.fail(node, f".{name}(-1) that merges axes is not supported")
            out.insert(want.index(-1), rest.pop() if rest else 1)
        if rest:
            self.fail(node, f".{name}() that merges axes is not supported")
        return Val(v.expr, check_distinct(tuple(out)))

    def maximum(self, v, name, args, kw, node):
        positions = self.dims_of(args, kw, node, v)
        if positions is None or len(positions) != 1:
            self.fail(node, f".{name}() needs one dim")
        p = positions[0]
        a = v.dims[p]
        keep = self.keepdim(kw, node)
        kept = tuple(1 if i == p else d for i, d in enumerate(v.dims))
        dropped = tuple(d for i, d in enumerate(v.dims) if i != p)
        values = Val(Max(a, v.expr), kept if keep else dropped)
        indices = Index(dropped, a, ArgmaxMask(a, v.expr))
        if name == "amax":
            return values
        if name == "argmax":
            return indices
        return MaxResult(values, indices)

    def library(self, module, name, args, kw, node):
        vals = [self._value(a) for a in args]
        for v in vals:
            if isinstance(v, Poison):
                return v
        if module == "torch" and name in ("ones_like", "zeros_like"):
            src = vals[0]
            return Val(sp.Integer(1 if name == "ones_like" else 0), src.dims)
        if module == "torch" and name == "full_like":
            fill = vals[1]
            return Val(fill.expr, vals[0].dims)
        if module == "torch" and name == "where" and len(vals) == 3:
            cond, x, y = vals
            picked = self.binop(ast.Add(), self.binop(ast.Mult(), cond, x, node),
                                self.binop(ast.Mult(), Val(1 - cond.expr, cond.dims), y, node), node)
            return picked
        if name in ELEMENTWISE and (module == "torch" or name in ("sigmoid", "relu", "softplus")):
            return Val(ELEMENTWISE[name](vals[0].expr), vals[0].dims)
        if module == "torch" and name in ("sum", "mean", "var", "max", "amax", "argmax", "pow", "square",
                                          "rsqrt", "clone"):
            return self.method(vals[0], name, args[1:], kw, node)
        if module == "F" and name == "one_hot" or module == "torch" and name == "one_hot":
            idx = vals[0]
            if not isinstance(idx, Index):
                self.fail(node, "F.one_hot needs class indices (Yb) or .max(dim).indices")
            return Val(idx.onehot, tuple(idx.dims) + (idx.axis,))
        if name in ("softmax", "log_softmax"):
            v = vals[0]
            dim_node = args[1] if len(args) > 1 else kw.get("dim")
            if dim_node is None:
                self.fail(node, f"{name} needs dim=")
            a = v.dims[self.position(v, self.int_arg(dim_node, node), node)]
            shifted = v.expr - Max(a, v.expr)  # torch's own max shift
            if name == "softmax":
                return Val(sp.exp(shifted) / Sum(a, sp.exp(shifted)), v.dims)
            return Val(shifted - sp.log(Sum(a, sp.exp(shifted))), v.dims)
        if module == "torch" and name in ("matmul", "mm") and len(vals) == 2:
            return self.binop(ast.MatMult(), vals[0], vals[1], node)
        if module == "torch" and name == "transpose":
            return self.method(vals[0], "transpose", args[1:], kw, node)
        if name == "arange" and module == "torch":
            return Range(vals[0].expr)
        self.fail(node, f"{'torch' if module == 'torch' else 'F'}.{name} is not supported")

