"""Grade a learner's hand-written backward pass: prove it right, or say what is wrong.

A learner's answer is the torch code of the exercise notebook (``dbnvar_inv =
(bndiff * dbnraw).sum(0, keepdim=True)``, ``dhprebn = ...``). It is read, not
run: a small abstract interpreter over the Python AST turns every expression
into symbp's element algebra (one SymPy expression for "the element at the
current index", plus the tensor's dims), so ``.sum(0, keepdim=True)`` becomes
``Sum(n, ...)`` with the dim kept, ``@`` a contraction, ``F.one_hot(Yb)`` the
one-hot class symbol. Shapes are tracked exactly: ``(d,)`` is not ``(1, d)``.

An answer is correct when two independent checks agree:

* the symbolic proof (``symbp.engine.prove.residual``): the answer and the derived
  gradient, both taken down to the inputs, reduce to a zero difference for
  every batch size;
* an exact randomised test that shares no code with the engine: the forward
  pass is evaluated at random rational points for several concrete axis sizes
  (``Fraction`` arithmetic; 50-digit ``mpmath`` only where a square root, exp,
  log or tanh leaves the rationals), the true gradient comes from forward-mode
  dual numbers through that evaluation, and the answer is evaluated on the
  same values.

A wrong answer is diagnosed with the same evaluator: the gradient with one
path cut (a missing path), the other variance convention, a sign, a constant
factor, a missing sum over a broadcast axis, a transposed matmul, or an error
inherited from an earlier line; otherwise the simplified difference is shown.
A right answer may get a note (raw ``exp`` that overflows, a form much less
accurate in float32 than the derived one), never a different verdict.
"""

from __future__ import annotations

import ast
import itertools
import random
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache

import mpmath
import sympy as sp

from symbp.spec import ArgmaxMask, Max, SpecError, Sum

PROOF_OPS_LIMIT = 4000  # larger answers are judged by the exact test alone
PROOF_SECONDS = 15  # a reduction still running then is abandoned for the exact test (8 worlds)
MP_DIGITS = 50
MP = mpmath.MPContext()  # a private context: the global mpmath precision stays as it is
MP.dps = MP_DIGITS
TOLERANCE = MP.mpf(10) ** -(MP_DIGITS - 12)


class GradeError(ValueError):
    """An answer that cannot be read: one line naming its line and construct."""


# ---------------------------------------------------------------------------
# Reading the answer
# ---------------------------------------------------------------------------


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


class _ShapeError(Exception):
    pass


def _dims_str(dims) -> str:
    if not dims:
        return "scalar"
    return "(" + ", ".join(str(a) for a in dims) + ("," if len(dims) == 1 else "") + ")"


def _broadcast(a: tuple, b: tuple, what: str) -> tuple:
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        x = a[-i] if i <= len(a) else 1
        y = b[-i] if i <= len(b) else 1
        if x == y or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        else:
            raise _ShapeError(f"{what}: shapes {_dims_str(a)} and {_dims_str(b)} do not broadcast")
    return _check_distinct(tuple(reversed(out)))


def _check_distinct(dims: tuple) -> tuple:
    axes = [a for a in dims if a != 1]
    if len(set(axes)) != len(axes):
        raise _ShapeError(f"shape {_dims_str(dims)} has an axis twice")
    return dims


@dataclass
class Assignment:
    """One graded name: the learner's variable and the tensor whose gradient it is."""

    name: str
    tensor: str
    line: int
    versions: list = field(default_factory=list)  # version symbols, in order


REDUCING_METHODS = ("sum", "mean", "var")
NOOP_METHODS = ("clone", "detach", "float", "double", "contiguous")
ELEMENTWISE = {"exp": sp.exp, "log": sp.log, "tanh": sp.tanh, "sqrt": sp.sqrt, "abs": sp.Abs,
               "sin": sp.sin, "cos": sp.cos, "erf": sp.erf,
               "sigmoid": lambda x: 1 / (1 + sp.exp(-x)), "relu": lambda x: sp.Max(x, 0),
               "softplus": lambda x: sp.log(1 + sp.exp(x))}
COMPARISONS = {ast.Gt: sp.StrictGreaterThan, ast.GtE: sp.GreaterThan, ast.Lt: sp.StrictLessThan,
               ast.LtE: sp.LessThan}
CLASS_ALIASES = ("Yb", "Y", "targets", "y")
GRADED_SUFFIXES = ("_fast", "_fused")


class Reader:
    """Translates an answer's statements into element expressions, executing nothing."""

    def __init__(self, spec, chunked, filename="ANSWER.py"):
        self.spec = spec
        self.chunked = chunked
        self.filename = filename
        self.env: dict = {}
        self.assignments: dict = {}  # learner name -> Assignment, in answer order
        self.versions: dict = {}  # version symbol -> Val or Poison
        self.modules = {"torch": Module("torch"), "F": Module("F")}
        self.notes: list = []  # about the answer as a whole
        self.line = 0
        out = spec.output_tensor
        self.incoming = spec.adjoint(out.name)
        classes = [t for t in spec.tensors.values() if t.role == "classes"]
        self.class_tensor = classes[0] if len(classes) == 1 else None

    # -- errors ----------------------------------------------------------
    def fail(self, node, what):
        line = getattr(node, "lineno", self.line)
        raise GradeError(f"{self.filename} line {line}: {what}")

    # -- names -----------------------------------------------------------
    def graded_tensor(self, name):
        """The tensor whose gradient ``name`` is, or None for a helper variable."""
        base = name
        for suffix in GRADED_SUFFIXES:
            if base.endswith(suffix):
                base = base[: -len(suffix)]
        if not base.startswith("d"):
            return None
        t = self.spec.tensors.get(base[1:])
        if t is None or t.role in ("classes", "output") or t.name not in self.chunked.contributions:
            return None
        return t.name

    def lookup(self, node):
        name = node.id
        if name in self.env:
            return self.env[name]
        if name in self.modules:
            return self.modules[name]
        spec = self.spec
        if name in spec.tensors:
            t = spec.tensors[name]
            if t.role == "classes":
                return Index(t.index_dims, t.class_axis, t.symbol)
            return Val(t.symbol, t.dims)
        if self.class_tensor is not None and name in CLASS_ALIASES:
            t = self.class_tensor
            return Index(t.index_dims, t.class_axis, t.symbol)
        if name.startswith("d") and name[1:] in spec.tensors and spec.tensors[name[1:]].role != "classes":
            return Val(spec.adjoint(name[1:]), spec.tensors[name[1:]].dims)
        for a in spec.axis_list:
            if a.name == name:
                return Val(a, ())
        if name == "batch_size" and spec.axis_list:
            return Val(spec.axis_list[0], ())
        if name in spec.options:
            return Val(spec.options[name].symbol, ())
        if name in ("range", "len", "float", "int"):
            return name
        known = ", ".join(t for t, v in spec.tensors.items() if v.role not in ("classes", "output"))
        sizes = ", ".join(a.name for a in spec.axis_list)
        self.fail(node, f"unknown name {name!r} ({spec.name} has the tensors {known}, the incoming "
                        f"gradient {self.incoming}, the sizes {sizes}, and dNAME for each gradient)")

    # -- statements ------------------------------------------------------
    def run(self, source: str):
        try:
            tree = ast.parse(source, filename=self.filename)
        except SyntaxError as e:
            raise GradeError(f"{self.filename} line {e.lineno}: invalid Python syntax ({e.msg})") from None
        for stmt in tree.body:
            self.line = stmt.lineno
            self.statement(stmt)

    def statement(self, stmt):
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            for alias in stmt.names:
                prefix = stmt.module + "." if isinstance(stmt, ast.ImportFrom) and stmt.module else ""
                full = prefix + alias.name
                local = alias.asname or alias.name.split(".")[0]
                if full == "torch.nn.functional":
                    self.modules[local] = Module("F")
                elif full == "torch" or (full.startswith("torch.") and not alias.asname):
                    self.modules[local] = Module("torch")
            return
        if isinstance(stmt, ast.Expr):
            v = stmt.value
            if isinstance(v, ast.Call) and isinstance(v.func, ast.Attribute) and v.func.attr.endswith("_"):
                self.fail(stmt, f"the in-place method .{v.func.attr}() is not supported (write dNAME = ...)")
            return  # notebook display and checks (cmp, print, x.shape): no effect on the answer
        if isinstance(stmt, ast.Assign):
            if len(stmt.targets) != 1:
                self.fail(stmt, "chained assignment a = b = ... is not supported")
            target = stmt.targets[0]
            if isinstance(target, ast.Name):
                self.assign(target.id, self.value(stmt.value), stmt)
                return
            if isinstance(target, ast.Subscript):
                self.assign_rows(target, stmt.value, None, stmt)
                return
            if (isinstance(target, ast.Tuple) and isinstance(stmt.value, ast.Tuple)
                    and len(target.elts) == len(stmt.value.elts)
                    and all(isinstance(e, ast.Name) for e in target.elts)):
                values = [self.value(e) for e in stmt.value.elts]  # right side first, as Python does
                for e, v in zip(target.elts, values):
                    self.assign(e.id, v, stmt)
                return
            self.fail(stmt, f"assignment to {type(target).__name__} is not supported (assign one name)")
        if isinstance(stmt, ast.With):  # `with torch.no_grad():` around the answer
            for inner in stmt.body:
                self.line = inner.lineno
                self.statement(inner)
            return
        if isinstance(stmt, ast.AugAssign):
            if isinstance(stmt.target, ast.Name):
                old = self.lookup(stmt.target)
                new = self.binop(stmt.op, old, self.value(stmt.value), stmt)
                if isinstance(old, Val) and isinstance(new, Val) and new.dims != old.dims:
                    new = Poison(f"in-place {type(stmt.op).__name__} would change the shape of "
                                 f"{stmt.target.id} from {_dims_str(old.dims)} to {_dims_str(new.dims)}",
                                 stmt.lineno)
                self.assign(stmt.target.id, new, stmt)
                return
            if isinstance(stmt.target, ast.Subscript):
                self.assign_rows(stmt.target, stmt.value, stmt.op, stmt)
                return
            self.fail(stmt, "augmented assignment to this target is not supported")
        self.fail(stmt, f"{type(stmt).__name__} statements are not supported (write dNAME = <expression>)")

    def assign(self, name, value, stmt):
        sizes = {a.name for a in self.spec.axis_list} | {"batch_size"}
        if name in sizes and isinstance(value, Val) and not value.dims and value.expr.is_number:
            self.notes.append(f"line {stmt.lineno}: {name} = {value.expr} is ignored; "
                              f"{name} stays a symbol, so the answer is checked for every size")
            return
        if not isinstance(value, (Val, Poison)):
            if name not in self.assignments and self.graded_tensor(name) is None:
                self.env[name] = value  # a helper holding indices, a module, ...
                return
            self.fail(stmt, f"{name} is assigned something that is not a tensor")
        tensor = self.graded_tensor(name)
        if tensor is None:
            self.env[name] = value
            return
        rec = self.assignments.setdefault(name, Assignment(name, tensor, stmt.lineno))
        sym = sp.Dummy(f"{name}_v{len(rec.versions)}", real=True)
        rec.versions.append(sym)
        self.versions[sym] = value
        # a shape error stays with its own line: later lines read the version symbol
        dims = value.dims if isinstance(value, Val) else self.spec.tensors[tensor].dims
        self.env[name] = Val(sym, dims)

    def assign_rows(self, target, value_node, op, stmt):
        """``x[range(n), Yb] = v`` / ``-= v``: write along the one-hot positions."""
        if not isinstance(target.value, ast.Name):
            self.fail(stmt, "only NAME[range(n), Yb] subscript assignment is supported")
        base = self.lookup(target.value)
        idx = self.row_index(target.slice, base, stmt)
        if isinstance(base, Poison):
            self.assign(target.value.id, base, stmt)
            return
        value = self.value(value_node)
        if isinstance(value, Poison):
            self.assign(target.value.id, value, stmt)
            return
        if not isinstance(value, Val):
            self.fail(stmt, "the assigned value is not a tensor")
        try:
            _broadcast(idx.dims, value.dims, "indexed assignment")
            if len(value.dims) > len(idx.dims):
                raise _ShapeError(f"indexed assignment of a {_dims_str(value.dims)} value into "
                                  f"{_dims_str(idx.dims)} positions")
        except _ShapeError as e:
            self.assign(target.value.id, Poison(str(e), stmt.lineno), stmt)
            return
        y = idx.onehot
        if op is None:
            new = value.expr * y if base.expr == 0 else base.expr * (1 - y) + value.expr * y
        else:
            delta = self.binop(op, Val(base.expr, tuple(idx.dims)), value, stmt)
            if isinstance(delta, Poison):
                self.assign(target.value.id, delta, stmt)
                return
            new = base.expr * (1 - y) + delta.expr * y
        self.assign(target.value.id, Val(new, base.dims), stmt)

    def row_index(self, node, base, stmt) -> Index:
        if not (isinstance(node, ast.Tuple) and len(node.elts) == 2):
            self.fail(stmt, "only the index [range(n), Yb] is supported")
        rows, cols = (self.value(e) for e in node.elts)
        if not isinstance(rows, Range) or not isinstance(cols, Index):
            self.fail(stmt, "only the index [range(n), Yb] (rows, then class indices) is supported")
        if isinstance(base, Val) and base.dims != tuple(cols.dims) + (cols.axis,):
            self.fail(stmt, f"indexing a {_dims_str(base.dims)} tensor with [range(n), class indices] "
                            f"needs shape {_dims_str(tuple(cols.dims) + (cols.axis,))}")
        return cols

    # -- expressions -----------------------------------------------------
    def value(self, node):
        try:
            return self._value(node)
        except _ShapeError as e:
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
            dims = _broadcast(a.dims, b.dims, what)
        except _ShapeError as e:
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
            return Poison(f"line {line}: matmul {_dims_str(a.dims)} @ {_dims_str(b.dims)}: inner dims {k1} "
                          f"and {k2} differ{hint}", line)
        body = a.expr * b.expr
        expr = body if k1 == 1 else Sum(k1, body)
        try:
            return Val(expr, _check_distinct(tuple(a.dims[:-1]) + tuple(b.dims[1:])))
        except _ShapeError as e:
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
                self.fail(node, f"shape index {i} out of range for {_dims_str(base.dims)}")
            return Val(sp.Integer(1) if a == 1 else a, ())
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
            self.fail(node, f"dim {dim} out of range for shape {_dims_str(v.dims)}")
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
                return Val(sp.Integer(1) if v.dims[0] == 1 else v.dims[0], ())
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
                size = sp.Integer(1) if a == 1 else a
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
            return Val(sp.Integer(1) if a == 1 else a, ())
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
        return Val(v.expr, _check_distinct(tuple(out)))

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

    # -- results ---------------------------------------------------------
    def final(self, rec: Assignment):
        return self.versions[rec.versions[-1]]

    def expand(self, expr, local_for=None):
        """Replace version symbols by their values.

        With ``local_for``, the final value of every *other* graded name is the
        true adjoint instead, so a line is judged on its own, given its inputs.
        """
        finals = {rec.versions[-1]: rec for rec in self.assignments.values()}
        for _ in range(len(self.versions) + 2):
            subs = {}
            for s in expr.free_symbols:
                if s in self.versions:
                    rec = finals.get(s)
                    if local_for is not None and rec is not None and rec.name != local_for:
                        subs[s] = self.spec.adjoint(rec.tensor)
                    else:
                        v = self.versions[s]
                        if isinstance(v, Poison):
                            return v
                        subs[s] = v.expr
            if not subs:
                return expr
            expr = expr.xreplace(subs)
        return expr


# ---------------------------------------------------------------------------
# Exact evaluation, independent of the engine
# ---------------------------------------------------------------------------


class Dual:
    """``a + b*eps`` with eps**2 = 0: forward-mode derivative of one input element."""

    __slots__ = ("a", "b")

    def __init__(self, a, b):
        self.a, self.b = a, b


def _mp(x):
    if isinstance(x, Fraction):
        return MP.mpf(x.numerator) / x.denominator
    return x


def _add(x, y):
    if isinstance(x, Dual) or isinstance(y, Dual):
        x, y = _dual(x), _dual(y)
        return Dual(_add(x.a, y.a), _add(x.b, y.b))
    if isinstance(x, Fraction) and isinstance(y, Fraction):
        return x + y
    return _mp(x) + _mp(y)


def _mul(x, y):
    if isinstance(x, Dual) or isinstance(y, Dual):
        x, y = _dual(x), _dual(y)
        return Dual(_mul(x.a, y.a), _add(_mul(x.a, y.b), _mul(x.b, y.a)))
    if isinstance(x, Fraction) and isinstance(y, Fraction):
        return x * y
    if (isinstance(x, Fraction) and x == 0) or (isinstance(y, Fraction) and y == 0):
        return Fraction(0)
    return _mp(x) * _mp(y)


def _dual(x):
    return x if isinstance(x, Dual) else Dual(x, Fraction(0))


def _real(x):
    return x.a if isinstance(x, Dual) else x


def _pow(x, e: Fraction):
    if isinstance(x, Dual):
        return Dual(_pow(x.a, e), _mul(_mul(e, _pow(x.a, e - 1)), x.b))
    if e.denominator == 1 and isinstance(x, Fraction):
        if x == 0 and e < 0:
            raise ZeroDivisionError("zero to a negative power")
        return x ** int(e)
    return _mp(x) ** _mp(e)


def _func(f, x):
    if isinstance(x, Dual):
        v = _func(f, x.a)
        if f is sp.exp:
            d = v
        elif f is sp.log:
            d = _pow(x.a, Fraction(-1))
        elif f is sp.tanh:
            d = _add(Fraction(1), -_mul(v, v))
        else:  # Abs
            d = Fraction(1 if _mp(x.a) >= 0 else -1)
        return Dual(v, _mul(d, x.b))
    if f is sp.Abs:
        return abs(x)
    fn = {sp.exp: MP.exp, sp.log: MP.log, sp.tanh: MP.tanh}[f]
    if f is sp.exp and x == 0:
        return Fraction(1)
    if f is sp.log and x == 1:
        return Fraction(0)
    return fn(_mp(x))


def _neg(x):
    return _mul(Fraction(-1), x)


def close(x, y) -> bool:
    """Exactly equal rationals, or equal to ``MP_DIGITS - 12`` digits."""
    x, y = _real(x), _real(y)
    if isinstance(x, Fraction) and isinstance(y, Fraction):
        return x == y
    x, y = _mp(x), _mp(y)
    return abs(x - y) <= TOLERANCE * (1 + max(abs(x), abs(y)))


class World:
    """One concrete instance of a spec: axis sizes, random rationals, the forward values.

    ``gradient(name)`` is the true gradient of the output (contracted with the
    incoming gradient) with respect to tensor ``name``, by dual numbers through
    this evaluation; ``cut`` removes one edge or node from the graph.
    """

    def __init__(self, spec, sizes: dict, seed: int, dout_one: bool):
        self.spec = spec
        self.size = {a: sizes[a] for a in spec.axis_list}
        rng = random.Random(seed)
        self.values: dict = {}
        pool = rng.sample(range(-400, 400), 800)  # distinct values: no ties for a max
        pool_it = iter(pool)
        self.options = {o.symbol: Fraction(1, rng.randint(3, 12)) for o in spec.options.values()}
        for t in spec.arguments:
            if t.role == "classes":
                ca = self.size[t.class_axis]
                hot = {}
                for idx in self.indices(t.index_dims):
                    k = rng.randrange(ca)
                    for c in range(ca):
                        hot[idx + (c,)] = Fraction(int(c == k))
                self.values[t.name] = hot
            else:
                vals = {}
                for idx in self.indices(t.dims):
                    try:
                        vals[idx] = Fraction(next(pool_it), 37)
                    except StopIteration:
                        vals[idx] = Fraction(rng.randint(-400, 400), 41)
                self.values[t.name] = vals
        out = spec.output_tensor
        self.dout = {idx: (Fraction(1) if dout_one else Fraction(rng.randint(-9, 9) or 1, rng.randint(1, 5)))
                     for idx in self.indices(out.dims)}
        self.adjoint_of = {spec.adjoint(t.name): t.name for t in spec.tensors.values() if t.role != "classes"}
        self.incoming = spec.adjoint(out.name)
        for b in spec.bindings:
            self.values[b.name] = self.compute(b, self.values)
        self._grads: dict = {}
        self._deps = _dependents(spec)

    def indices(self, dims):
        axes = [a for a in dims if a != 1]
        return [tuple(p) for p in itertools.product(*(range(self.size[a]) for a in axes))]

    def compute(self, binding, values, cut_edge=None):
        axes = [a for a in binding.dims if a != 1]
        out = {}
        for idx in self.indices(binding.dims):
            out[idx] = self.eval(binding.expr, dict(zip(axes, idx)), values, cut_edge)
        return out

    # -- the evaluator ----------------------------------------------------
    def eval(self, e, env, values=None, cut_edge=None):
        return _compiled(e)(self, env, self.values if values is None else values, cut_edge)

    def symbol(self, s, env, values, cut_edge):
        if s in self.size:
            return Fraction(self.size[s])
        if s in self.options:
            return self.options[s]
        if s == self.incoming:
            t = self.spec.output_tensor
            return self.dout[tuple(env[a] for a in t.dims if a != 1)]
        if s in self.adjoint_of:
            name = self.adjoint_of[s]
            t = self.spec.tensors[name]
            return self.gradient(name)[tuple(env[a] for a in t.dims if a != 1)]
        t = self.spec.tensor_of(s)
        v = values[t.name][tuple(env[a] for a in t.dims if a != 1)]
        if cut_edge is not None and t.name == cut_edge:
            return _real(v)
        return v

    # -- gradients by forward mode ---------------------------------------
    def gradient(self, name, cut=None) -> dict:
        """``{index: d<out, dout>/d name[index]}``; ``cut`` is None, ``("edge", via)`` or ``("node", v)``."""
        key = (name, cut)
        if key in self._grads:
            return self._grads[key]
        spec = self.spec
        t = spec.tensors[name]
        later = [b for b in spec.bindings if b.name in self._deps[name]]
        out_t = spec.output_tensor
        grad = {}
        for idx in self.indices(t.dims):
            values = dict(self.values)
            values[name] = dict(values[name])
            values[name][idx] = Dual(values[name][idx], Fraction(1))
            for b in later:
                edge = name if cut == ("edge", b.name) else None
                vals = self.compute(b, values, edge)
                if cut == ("node", b.name) or (cut and cut[0] == "nodes" and b.name in cut[1]):
                    vals = {k: _real(v) for k, v in vals.items()}
                values[b.name] = vals
            total = Fraction(0)
            for o, v in values[out_t.name].items():
                if isinstance(v, Dual):
                    total = _add(total, _mul(self.dout[o], v.b))
            grad[idx] = total
        self._grads[key] = grad
        return grad

    def over(self, expr, dims) -> dict:
        """``{index: value}`` of an element expression over ``dims``."""
        axes = [a for a in dims if a != 1]
        return {idx: self.eval(expr, dict(zip(axes, idx))) for idx in self.indices(dims)}


@lru_cache(maxsize=8192)
def _compiled(e):
    """``e`` as a closure ``f(world, env, values, cut_edge)``: the tree is walked once, not per element."""
    if e.is_Number:
        value = Fraction(int(e.p), int(e.q)) if e.is_Rational else Fraction(str(e))
        return lambda w, env, values, cut: value
    if e.is_Symbol:
        return lambda w, env, values, cut: w.symbol(e, env, values, cut)
    if isinstance(e, (sp.Add, sp.Mul)):
        fs = [_compiled(a) for a in e.args]
        op, unit = (_add, Fraction(0)) if isinstance(e, sp.Add) else (_mul, Fraction(1))

        def fold(w, env, values, cut):
            acc = unit
            for f in fs:
                acc = op(acc, f(w, env, values, cut))
            return acc
        return fold
    if isinstance(e, sp.Pow):
        if not e.exp.is_Rational:
            raise SpecError(f"non-rational exponent in {e}")
        ex = Fraction(int(e.exp.p), int(e.exp.q))
        base = _compiled(e.base)
        return lambda w, env, values, cut: _pow(base(w, env, values, cut), ex)
    if isinstance(e, (sp.exp, sp.log, sp.tanh, sp.Abs)):
        arg, func = _compiled(e.args[0]), e.func
        return lambda w, env, values, cut: _func(func, arg(w, env, values, cut))
    if isinstance(e, (Sum, Max, ArgmaxMask)):
        body, axis = _compiled(e.body), e.axis

        def along(w, env, values, cut):
            return [body(w, {**env, axis: k}, values, cut) for k in range(w.size[axis])]
        if isinstance(e, Sum):
            def total(w, env, values, cut):
                acc = Fraction(0)
                for v in along(w, env, values, cut):
                    acc = _add(acc, v)
                return acc
            return total
        if isinstance(e, Max):
            return lambda w, env, values, cut: max(along(w, env, values, cut), key=lambda v: _mp(_real(v)))

        def mask(w, env, values, cut):
            vals = [_mp(_real(v)) for v in along(w, env, values, cut)]
            return Fraction(int(vals.index(max(vals)) == env[axis]))
        return mask
    if not any(isinstance(a, (Sum, Max, ArgmaxMask)) for a in sp.preorder_traversal(e)):
        return _elementwise(e)
    raise SpecError(f"cannot evaluate {type(e).__name__} in {e}")


def _elementwise(e):
    """Any other elementwise function (sigmoid, erf, Piecewise, ...) by SymPy's numerics.

    The leaves are evaluated here and substituted as numbers; a dual leaf adds
    the partial derivative (SymPy's ``diff`` of this one function) times its part.
    """
    leaves = sorted(e.free_symbols, key=str)
    partials = {}

    def number(x):
        x = _real(x)
        if isinstance(x, Fraction):
            return sp.Rational(x.numerator, x.denominator)
        return sp.Float(str(x), MP_DIGITS)

    def value_of(expr, subs):
        v = expr.xreplace(subs)
        n = v.evalf(MP_DIGITS)
        if not n.is_Number:  # a function SymPy cannot evaluate directly: its exp form
            n = v.rewrite(sp.exp).evalf(MP_DIGITS)
        if not n.is_Number:
            raise SpecError(f"the exact test cannot evaluate {e}")
        if not n.is_real:
            raise ValueError(f"{e} is not real here")
        return MP.mpf(str(n))

    def run(w, env, values, cut):
        got = {s: w.symbol(s, env, values, cut) for s in leaves}
        subs = {s: number(x) for s, x in got.items()}
        v = value_of(e, subs)
        duals = [s for s, x in got.items() if isinstance(x, Dual)]
        if not duals:
            return v
        slope = Fraction(0)
        for s in duals:
            if s not in partials:
                partials[s] = sp.diff(e, s)
            slope = _add(slope, _mul(value_of(partials[s], subs), got[s].b))
        return Dual(v, slope)
    return run


class FloatWorld:
    """The forward pass in floating point at realistic sizes, for precision notes only.

    Every value is an array over all the spec's axes (size one where it does not vary),
    so broadcasting is numpy's own and a ``Sum`` is a sum over one array axis.
    """

    SIZES = {"n": 32, "c": 27, "v": 27, "d": 64, "i": 30, "o": 64, "t": 3, "e": 10}

    def __init__(self, spec, dtype, dout_one, like=None):
        import numpy as np

        self.np, self.dtype, self.spec = np, dtype, spec
        self.axes = list(spec.axis_list)
        self.size = {a: self.SIZES.get(a.name, 16) for a in self.axes}
        self.options = {o.symbol: o.default for o in spec.options.values()}
        self.values = {}
        rng = np.random.default_rng(0)
        for t in spec.arguments:
            if like is not None:
                self.values[t.name] = like.values[t.name].astype(dtype)
                continue
            shape = self.shape_of(t.dims)
            if t.role == "classes":
                k = t.class_axis
                hot = rng.integers(0, self.size[k], size=self.shape_of(t.index_dims))
                classes = np.arange(self.size[k]).reshape(self.shape_of((k,)))
                self.values[t.name] = (classes == hot).astype(dtype)
            else:
                x = rng.standard_normal(shape)
                self.values[t.name] = (1 + 0.1 * x if "gain" in t.name else x).astype(dtype)
        out = spec.output_tensor
        if like is not None:
            self.dout = like.dout.astype(dtype)
        else:
            shape = self.shape_of(out.dims)
            self.dout = np.ones(shape, dtype) if dout_one else rng.standard_normal(shape).astype(dtype)
        self.incoming = spec.adjoint(out.name)
        for b in spec.bindings:
            self.values[b.name] = self.eval(b.expr)

    def shape_of(self, dims):
        present = {a for a in dims if a != 1}
        return tuple(self.size[a] if a in present else 1 for a in self.axes)

    def eval(self, e):
        np = self.np
        if e.is_Number:
            return np.asarray(float(e), self.dtype)
        if e.is_Symbol:
            if e in self.size:
                return np.asarray(self.size[e], self.dtype)
            if e in self.options:
                return np.asarray(self.options[e], self.dtype)
            if e == self.incoming:
                return self.dout
            return self.values[self.spec.tensor_of(e).name]
        if isinstance(e, sp.Add):
            return sum((self.eval(a) for a in e.args[1:]), self.eval(e.args[0]))
        if isinstance(e, sp.Mul):
            out = self.eval(e.args[0])
            for a in e.args[1:]:
                out = out * self.eval(a)
            return out
        if isinstance(e, sp.Pow):
            return np.power(self.eval(e.base), self.dtype(float(e.exp)))
        funcs = {sp.exp: np.exp, sp.log: np.log, sp.tanh: np.tanh, sp.Abs: np.abs}
        if type(e) in funcs:
            return funcs[type(e)](self.eval(e.args[0]))
        if isinstance(e, (Sum, Max, ArgmaxMask)):
            k = self.axes.index(e.axis)
            body = self.eval(e.body)
            if isinstance(e, Sum):
                if body.ndim == 0 or body.shape[k] == 1:
                    return body * self.dtype(self.size[e.axis])
                return body.sum(axis=k, keepdims=True)
            top = body.max(axis=k, keepdims=True)
            return top if isinstance(e, Max) else (body == top).astype(self.dtype)
        raise SpecError(f"no float evaluation for {type(e).__name__}")


class _OutOfTime(Exception):
    pass


def _within(seconds, fn, *args):
    """``fn(*args)``, or None when it runs past ``seconds`` (main thread on POSIX; else no limit).

    SymPy's ``cancel`` on an unlucky answer can run for minutes; the exact test
    does not need it, so a grade never hangs on the second opinion.
    """
    import signal
    import threading

    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        return fn(*args)

    def late(signum, frame):
        raise _OutOfTime

    previous = signal.signal(signal.SIGALRM, late)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return fn(*args)
    except _OutOfTime:
        return None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _dependents(spec) -> dict:
    """Tensor name -> names of the bindings that depend on it (directly or not)."""
    deps = {t: set() for t in spec.tensors}
    for b in spec.bindings:
        direct = {spec.tensor_of(s).name for s in b.expr.free_symbols if spec.is_tensor(s)}
        for t in list(deps):
            if t in direct or deps[t] & direct:
                deps[t].add(b.name)
    return deps


def worlds_for(spec, dout_one: bool, count: int):
    """``count`` worlds of varied axis sizes (2 to 4) and seeds; the batch never 1 (Bessel)."""
    out = []
    for k in range(count):
        rng = random.Random(1000 + k)
        sizes = {a: 2 + (k + i) % 3 if k < 3 else rng.randint(2, 4) for i, a in enumerate(spec.axis_list)}
        out.append(World(spec, sizes, seed=k, dout_one=dout_one))
    return out


# ---------------------------------------------------------------------------
# Verdicts and diagnoses
# ---------------------------------------------------------------------------


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
        from symbp.teach.printers import TexPrinter

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


class Grader:
    """Compares each answered gradient with symbp's derivation and the exact evaluator."""

    def __init__(self, layer: str, options: dict):
        from symbp.engine.derivation import derive

        self.layer = layer
        self.options = options
        self.d = derive(layer, **options)
        self.spec = self.d.spec
        from symbp.engine.simplify import Inliner

        self.inliner = Inliner(self.d.chunked)
        self._worlds: dict = {}
        self._alternatives: dict = {}
        self.adjoints = {sym: name for name, sym in self.d.chunked.adjoints.items()}
        self._rewrites = None

    def worlds(self, dout_one: bool, count: int = 3, spec=None):
        spec = spec or self.spec
        key = (id(spec), dout_one, count)
        if key not in self._worlds:
            self._worlds[key] = worlds_for(spec, dout_one, count)
        return self._worlds[key]

    def grade(self, source: str, filename: str = "ANSWER.py", explain: bool = True) -> Report:
        """Verdicts for ``source``; ``explain=False`` skips the diagnoses of wrong answers."""
        reader = Reader(self.spec, self.d.chunked, filename)
        reader.run(source)
        if not reader.assignments:
            names = ", ".join("d" + n for n in self.d.chunked.order)
            raise GradeError(f"{filename}: no gradient of {self.spec.name} is assigned "
                             f"(write dNAME = ... for one of {names})")
        verdicts = {name: self.judge(reader, rec) for name, rec in reader.assignments.items()}
        for name, v in verdicts.items():
            if explain and not v.correct and not v.diagnosis:
                self.explain(reader, reader.assignments[name], v, verdicts)
        report = Report(self.layer, self.spec, list(verdicts.values()))
        report.general_notes = list(reader.notes)
        return report

    # -- one gradient ------------------------------------------------------
    def judge(self, reader: Reader, rec: Assignment) -> Verdict:
        """Correct or not (proof and exact test); shape errors are diagnosed here."""
        spec = self.spec
        t = spec.tensors[rec.tensor]
        v = Verdict(rec.name, rec.tensor, rec.line, False)
        final = reader.final(rec)
        if isinstance(final, Poison):
            v.diagnosis = final.message
            return v
        local = reader.expand(final.expr, local_for=rec.name)
        if isinstance(local, Poison):
            v.diagnosis = f"it uses a value with a shape error: {local.message}"
            return v
        value = reader.expand(final.expr)
        v.yours = local
        incoming = reader.incoming
        circular = self.circular(local, t)
        if circular:
            v.diagnosis = circular
            return v
        graded = local if isinstance(value, Poison) else value
        dout_one = not spec.output_tensor.dims and incoming not in self.inliner.full(graded).free_symbols
        v.incoming_is_one = dout_one
        derived_display = (self.d.fused.gradients.get(rec.tensor) if t.differentiable
                           else self.d.chunked.gradient(rec.tensor))
        derived_full = self.inliner.of(rec.tensor)
        if dout_one:
            derived_display = derived_display.xreplace({incoming: 1})
            derived_full = derived_full.xreplace({incoming: 1})
        v.derived = derived_display
        v.derived_full = derived_full
        worlds = self.worlds(dout_one)
        if final.dims != t.dims:
            v.shape = f"{_dims_str(final.dims)}, not {_dims_str(t.dims)}"
            v.diagnosis = self.shape_diagnosis(local, final.dims, t, worlds)
            return v
        if isinstance(value, Poison):
            return v  # an earlier gradient it reads has a shape error; explained later
        v.notes.extend(self.precision_notes(value))
        same = self.matches(value, t, worlds)
        from symbp.engine.prove import residual

        full = self.inliner.full(value)
        try:  # an answer too big to expand is left to the exact test (below, with more worlds)
            res = _within(PROOF_SECONDS, residual, spec, full, derived_full) \
                if sp.count_ops(full) < PROOF_OPS_LIMIT else None
        except Exception:  # the proof is a second opinion; never let it crash a grade
            res = None
        proven = res is not None and res == 0
        if same and proven:
            v.correct = True
            v.notes.extend(self.float32_notes(full, derived_full, t, dout_one))
            return v
        if same and self.matches(value, t, self.worlds(dout_one, count=8)):
            v.correct = True
            v.notes.append("equal by the exact randomised test (8 sizes and seeds); the symbolic "
                           "reduction did not reach zero")
            return v
        if proven and not same:
            v.notes.append("the symbolic reduction says equal but exact evaluation disagrees; "
                           "graded wrong (please report this)")
        return v

    def precision_notes(self, value) -> list:
        """Right in exact arithmetic is not always right in float32: say where it may not be."""
        notes = []
        for node in sp.preorder_traversal(value):
            if isinstance(node, sp.exp) and not node.has(Max):
                raw = sorted(s.name for s in node.free_symbols
                             if self.spec.is_tensor(s) and self.spec.tensor_of(s).differentiable)
                if raw:
                    arg = sp.sstr(node.args[0])
                    notes.append(f"exp({arg}) is not shifted by its maximum: equal in exact arithmetic, "
                                 f"but it overflows in float32 once {raw[0]} passes about 88 "
                                 f"(F.softmax or the forward's own tensors are safe)")
                    break
        return notes

    def circular(self, expr, t) -> str:
        """A gradient read before backprop has it: d of the target itself or of an upstream tensor."""
        spec = self.spec
        later = _dependents(spec)[t.name]
        out = spec.output_tensor.name
        for s in sorted(expr.free_symbols, key=str):
            name = self.adjoints.get(s)
            if name is None or name == out or name in later:
                continue
            if name == t.name:
                return f"it reads d{name}, the gradient it defines"
            return (f"it reads d{name}, which backprop computes from d{t.name}; only the gradients of "
                    f"tensors that use {t.name} are known when d{t.name} is computed")
        return ""

    def float32_notes(self, mine, derived, t, dout_one) -> list:
        """Right in exact arithmetic, but much less accurate than the derived form in float32?

        Both are evaluated in float32 at a realistic size (batch 32, unit normal inputs) and
        compared with the derived form in float64; a note, never a verdict.
        """
        try:
            import numpy as np

            f64 = FloatWorld(self.spec, np.float64, dout_one)
            f32 = FloatWorld(self.spec, np.float32, dout_one, like=f64)
            ref = f64.eval(derived)
            scale = float(np.abs(ref).max()) or 1.0
            err_mine = float(np.abs(f32.eval(mine).astype(np.float64) - ref).max()) / scale
            err_derived = float(np.abs(f32.eval(derived).astype(np.float64) - ref).max()) / scale
        except Exception:  # an expression this float evaluator does not know: no note
            return []
        if err_mine > 1e-4 and err_mine > 100 * err_derived:
            return [f"in float32 yours is off by {err_mine:.1g} of the gradient's scale, the derived form "
                    f"by {err_derived:.1g} (batch 32, unit normal inputs): it loses precision"]
        return []

    def explain(self, reader, rec, v: Verdict, verdicts: dict):
        """The diagnosis of a wrong value: this line's own mistake, or one it inherits."""
        t = self.spec.tensors[rec.tensor]
        closure = _version_closure(reader, rec)
        uses = [r.name for r in reader.assignments.values()
                if r.name != rec.name and r.versions[-1] in closure]
        bad = [u for u in uses if not verdicts[u].correct]
        inherited = ""
        if bad:
            inherited = f"it uses {_and(bad)}, which {'is' if len(bad) == 1 else 'are'} wrong"
        worlds = self.worlds(v.incoming_is_one)
        if bad and self.matches(v.yours, t, worlds):
            v.diagnosis = f"this line is right given its inputs, but {inherited}"
            return
        try:  # shown in Jupyter for every wrong answer, and the diagnosis when nothing else fits
            mine = self.inliner.full(v.yours)
            if v.incoming_is_one:
                mine = mine.xreplace({reader.incoming: 1})
            v.difference = self.difference(mine, v.derived_full)
        except Exception:  # a display nicety: never let it crash a grade
            v.difference = None
        own = self.diagnose(v.yours, t, worlds, v.incoming_is_one)
        if not own:
            own = "yours differs from the gradient"
            if v.difference is not None:
                own = "yours - derived = " + _short(v.difference)
        v.diagnosis = own + (f"; also, {inherited}" if inherited else "")

    def matches(self, expr, t, worlds, cut=None, sign=1) -> bool:
        """Equal to the true gradient (negated, or with a path cut) at every element of every world.

        An expression undefined where the gradient is defined (a division by zero) is not equal.
        """
        try:
            return self._matches(expr, t, worlds, cut, sign)
        except (ZeroDivisionError, ValueError, OverflowError):
            return False

    def _matches(self, expr, t, worlds, cut, sign) -> bool:
        for w in worlds:
            got = w.over(expr, t.dims)
            want = w.gradient(t.name, cut)
            for idx, g in got.items():
                target = want[idx] if sign == 1 else _neg(want[idx])
                if not close(g, target):
                    return False
        return True

    # -- shape ------------------------------------------------------------
    def shape_diagnosis(self, expr, dims, t, worlds) -> str:
        yours, want = _dims_str(dims), _dims_str(t.dims)
        mine = [a for a in dims if a != 1]
        theirs = [a for a in t.dims if a != 1]
        head = f"shape {yours}, but {t.name} is {want}"
        if set(mine) == set(theirs):
            ok = self.matches(expr, t, worlds)
            values = "its values are right" if ok else "its values are wrong too"
            if mine != theirs:
                return (f"transposed: yours is {yours} but {t.name} is {want} "
                        f"(swap the matmul's operands); {values}")
            lost = [i for i, a in enumerate(t.dims) if a == 1]
            if len(dims) < len(t.dims) and lost:
                return (f"{head}: keep the summed dim, e.g. .sum({lost[0]}, keepdim=True) "
                        f"(a {yours} tensor broadcasts silently, which hides this); {values}")
            if len(dims) > len(t.dims):
                return f"{head}: drop the size-one dim (no keepdim=True, or .squeeze()); {values}"
            return f"{head}; {values}"
        extra = [a for a in mine if a not in theirs]
        if extra and set(theirs) <= set(mine):
            summed = expr
            for a in extra:
                summed = Sum(a, summed)
            where = ", ".join(str(a) for a in extra)
            pos = [i for i, a in enumerate(t.dims) if a == 1]
            how = f" (.sum({pos[0]}, keepdim=True))" if len(pos) == 1 and len(extra) == 1 else ""
            if self.matches(summed, t, worlds):
                return (f"missing sum over {where}: {t.name} is {want} and used along {where}, "
                        f"so its gradient sums over {where}{how}")
            return f"{head}: {t.name} is used along {where}, so its gradient sums over {where}{how}"
        missing = [a for a in theirs if a not in mine]
        if extra and missing:
            return (f"{head}: yours runs along {', '.join(map(str, extra))} where {t.name} runs along "
                    f"{', '.join(map(str, missing))} (a sum or matmul over the wrong axis?)")
        return head

    # -- value ------------------------------------------------------------
    def diagnose(self, value, t, worlds, dout_one) -> str:
        """Name the mistake, when it is one that learners make; else ''."""
        try:
            if all(close(g, 0) for w in worlds for g in w.over(value, t.dims).values()):
                return "yours is zero everywhere"
        except (ZeroDivisionError, ValueError, OverflowError):
            return "yours divides by zero at some sizes or values where the gradient is defined"
        if self.matches(value, t, worlds, sign=-1):
            return "sign error: yours is minus the gradient"
        return (self.alternative(value, t, dout_one) or self.missing_path(value, t, worlds)
                or self.factor(value, t, worlds) or self.tensor_factor(value, t, worlds))

    def alternative(self, value, t, dout_one) -> str:
        """Is it the gradient of this layer under another choice option (n vs n-1)?"""
        from symbp.engine.derivation import derive

        for opt, (default, kind, _) in self.d.layer.options.items():
            if not isinstance(kind, tuple):
                continue
            current = self.spec.settings.get(opt, default)
            for choice in kind:
                if choice == current:
                    continue
                key = (opt, choice)
                if key not in self._alternatives:
                    try:
                        self._alternatives[key] = derive(self.layer, **{**self.options, opt: choice}).spec
                    except Exception:  # an option value the layer rejects: no alternative
                        self._alternatives[key] = None
                other = self._alternatives[key]
                if other is None:
                    continue
                if t.name not in other.tensors:
                    continue
                if self.matches(value, other.tensors[t.name], self.worlds(dout_one, spec=other)):
                    if opt == "variance":
                        if current == "bessel":
                            return ("you divided by n where this layer's variance uses Bessel's n - 1 "
                                    "(yours is the gradient for --variance biased)")
                        return ("you used Bessel's n - 1 where this layer's variance divides by n "
                                "(yours is the gradient for --variance bessel)")
                    return f"yours is the gradient of {self.spec.name} with --{opt} {choice}, not {current}"
        return ""

    def missing_path(self, value, t, worlds) -> str:
        spec = self.spec
        contributions = self.d.chunked.contributions.get(t.name, [])
        vias = [c.via for c in contributions]
        deps = _dependents(spec)[t.name]
        for c in contributions:
            if c.via == spec.output_tensor.name:
                continue
            if len(set(vias)) > 1 and self.matches(value, t, worlds, cut=("edge", c.via)):
                return f"missing the path through {c.via} (the term {sp.sstr(c.expr)})"
        found = []
        for b in spec.bindings:
            if b.name in deps and b.role != "output" and self.matches(value, t, worlds, cut=("node", b.name)):
                found.append(b.name)
        if found:  # several nodes of one chain cut the same path: name the chain
            return f"missing the path through {' -> '.join(found)}"
        # two paths missing at once (a fused formula with only the direct term)
        nodes = [b.name for b in spec.bindings if b.name in deps and b.role != "output"]
        for i, p in enumerate(nodes):
            for q in nodes[i + 1:]:
                if self.matches(value, t, worlds, cut=("nodes", (p, q))):
                    return f"missing the paths through {p} and {q}"
        return ""

    def factor(self, value, t, worlds) -> str:
        try:
            return self._factor(value, t, worlds)
        except (ZeroDivisionError, ValueError, OverflowError):
            return ""

    def _factor(self, value, t, worlds) -> str:
        ratios = []
        for w in worlds:
            got = w.over(value, t.dims)
            want = w.gradient(t.name)
            r = None
            for idx, g in got.items():
                if close(want[idx], 0):
                    if not close(g, 0):
                        return ""
                    continue
                q = _ratio(g, want[idx])
                if r is None:
                    r = q
                elif not close(q, r):
                    return ""
            if r is None:
                return ""
            ratios.append((w, r))
        if all(close(r, ratios[0][1]) for _, r in ratios):
            k = ratios[0][1]
            return f"off by a constant factor: yours is {_fmt_number(k)} times the gradient"
        for cand in _size_factors(self.spec):
            if all(close(w.eval(cand, {}), r) for w, r in ratios):
                return f"off by a factor of {sp.sstr(cand)}: yours is {sp.sstr(cand)} times the gradient"
        return ""

    def tensor_factor(self, value, t, worlds) -> str:
        """yours = derived * s (or / s) for a forward tensor s: a factor forgotten or doubled."""
        spec = self.spec
        cands = []
        for u in spec.tensors.values():
            if u.role == "classes" or not u.axes <= t.axes:
                continue
            for c in (u.symbol, 1 / u.symbol, u.symbol ** 2, u.symbol ** -2):
                cands.append(c)
        for c in cands:
            if self.matches(value / c, t, worlds):  # yours = c * gradient
                if c.is_Pow and c.exp < 0:
                    s = sp.sstr(1 / c)
                    return f"a missing factor {s}: yours is the gradient divided by {s}"
                return f"an extra factor {sp.sstr(c)}: yours is {sp.sstr(c)} times the gradient"
        return ""

    def difference(self, full, derived_full):
        from symbp.engine.simplify import basis_rewrites, closed_form

        if self._rewrites is None:
            self._rewrites = basis_rewrites(self.spec)
        return closed_form(self.spec, full - derived_full, self._rewrites, {})


def _version_closure(reader, rec):
    """Version symbols ``rec``'s final value reads, through its own earlier versions
    (``dx = ...; dx += ...``) but not through other graded names."""
    finals = {r.versions[-1] for r in reader.assignments.values() if r.name != rec.name}
    seen, stack = set(), [rec.versions[-1]]
    while stack:
        s = stack.pop()
        v = reader.versions.get(s)
        if not isinstance(v, Val):
            continue
        for f in v.expr.free_symbols:
            if f in reader.versions and f not in seen:
                seen.add(f)
                if f not in finals:
                    stack.append(f)
    return seen


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


def _and(names) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _short(expr, limit=240) -> str:
    text = sp.sstr(expr)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _ratio(a, b):
    a, b = _real(a), _real(b)
    if isinstance(a, Fraction) and isinstance(b, Fraction):
        return a / b
    return _mp(a) / _mp(b)


def _fmt_number(k) -> str:
    if isinstance(k, Fraction):
        return str(k)
    f = Fraction(str(MP.nstr(k, 15))).limit_denominator(1000)
    return str(f) if close(_mp(f), k) else MP.nstr(k, 6)


def _size_factors(spec):
    out = []
    for a in spec.axis_list:
        for c in (a, 1 / a, a - 1, 1 / (a - 1), a / (a - 1), (a - 1) / a, 2 * a, 1 / (2 * a)):
            out.append(c)
            out.append(-c)
    return out


def grade(layer: str, source: str, filename: str = "ANSWER.py", **options) -> Report:
    """Grade ``source`` (the answer's Python text) against ``layer`` built with ``options``."""
    return Grader(layer, options).grade(source, filename)
