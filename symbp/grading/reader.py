"""Reading a learner's answer: the notebook's torch code, statement by statement.

A learner's answer is the torch code of the exercise notebook (``dbnvar_inv =
(bndiff * dbnraw).sum(0, keepdim=True)``, ``dhprebn = ...``). It is read, not
run: a small abstract interpreter over the Python AST turns every expression
into symbp's element algebra (one SymPy expression for "the element at the
current index", plus the tensor's dims), so ``.sum(0, keepdim=True)`` becomes
``Sum(n, ...)`` with the dim kept, ``@`` a contraction, ``F.one_hot(Yb)`` the
one-hot class symbol. Shapes are tracked exactly: ``(d,)`` is not ``(1, d)``.

This module holds the statements and names: which variable is the gradient of
which tensor, and every version of it (``dx = ...; dx += ...``), so that each
line can be judged on its own as well as through the lines it reads.
"""

from __future__ import annotations

import ast
import difflib

import sympy as sp

from symbp.engine.reverse import grad_name
from symbp.grading.expressions import ExpressionReader
from symbp.grading.values import (
    Assignment,
    GradeError,
    Index,
    Module,
    Poison,
    ShapeError,
    Val,
    broadcast,
    dims_str,
)

CLASS_ALIASES = ("Yb", "Y", "targets", "y")
GRADED_SUFFIXES = ("_fast", "_fused")


class Reader(ExpressionReader):
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
        self.gradient_of = {grad_name(t): t for t in spec.tensors}  # "dx" -> "x"

    # -- names -----------------------------------------------------------
    def graded_tensor(self, name):
        """The tensor whose gradient ``name`` is, or None for a helper variable."""
        base = name
        for suffix in GRADED_SUFFIXES:
            if base.endswith(suffix):
                base = base[: -len(suffix)]
        if base not in self.gradient_of:
            return None
        t = self.spec.tensors[self.gradient_of[base]]
        if t.role in ("classes", "output") or t.name not in self.chunked.contributions:
            return None
        return t.name

    def lookup(self, node):
        name = node.id
        if name in self.env:
            return self.env[name]
        if name in self.modules:
            return self.modules[name]
        spec = self.spec
        t = spec.tensors.get(name)
        if t is None and name in CLASS_ALIASES:
            t = self.class_tensor
        if t is None and name.endswith("b") and getattr(spec.tensors.get(name[:-1]), "role", "") == "classes":
            t = spec.tensors[name[:-1]]  # the seeds' minibatch name: Xb for the embedding's X
        if t is not None:
            if t.role == "classes":
                return Index(t.index_dims, t.class_axis, t.symbol)
            return Val(t.symbol, t.dims)
        t = spec.tensors[self.gradient_of[name]] if name in self.gradient_of else None
        if t is not None and t.role != "classes":
            return Val(spec.adjoint(t.name), t.dims)
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
                                 f"{stmt.target.id} from {dims_str(old.dims)} to {dims_str(new.dims)}",
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
            if name not in self.env:
                self.note_near_miss(name, stmt)
            self.env[name] = value
            return
        rec = self.assignments.setdefault(name, Assignment(name, tensor, stmt.lineno))
        sym = sp.Dummy(f"{name}_v{len(rec.versions)}", real=True)
        rec.versions.append(sym)
        self.versions[sym] = value
        # a shape error stays with its own line: later lines read the version symbol
        dims = value.dims if isinstance(value, Val) else self.spec.tensors[tensor].dims
        self.env[name] = Val(sym, dims)

    def note_near_miss(self, name, stmt):
        """A helper named almost like a gradient (``dlogit``) is most likely a typo: say it is not graded."""
        graded = [g for g in self.gradient_of if self.graded_tensor(g) is not None]
        close = difflib.get_close_matches(name, graded, n=1, cutoff=0.8)
        if name.startswith("d") and close:
            self.notes.append(f"line {stmt.lineno}: {name} is not a gradient of {self.spec.name} "
                              f"(did you mean {close[0]}?); it is read as a helper and not graded")

    def assign_rows(self, target, value_node, op, stmt):
        """``x[range(n), Yb] = v`` / ``-= v``: write along the one-hot positions; ``x[x <= 0] = 0``
        (a comparison of the same shape as the mask) likewise along the positions it selects."""
        if not isinstance(target.value, ast.Name):
            self.fail(stmt, "only NAME[range(n), Yb] subscript assignment is supported")
        base = self.lookup(target.value)
        idx = self.mask_index(target.slice, base, stmt)
        if idx is None:
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
            broadcast(idx.dims, value.dims, "indexed assignment")
            if len(value.dims) > len(idx.dims):
                raise ShapeError(f"indexed assignment of a {dims_str(value.dims)} value into "
                                  f"{dims_str(idx.dims)} positions")
        except ShapeError as e:
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

    def mask_index(self, node, base, stmt):
        """``x <= 0`` as the positions of a masked assignment, or None for any other index."""
        if isinstance(node, ast.Tuple) or not isinstance(base, Val):
            return None
        mask = self.value(node)
        if not (isinstance(mask, Val) and isinstance(mask.expr, sp.Piecewise) and len(mask.expr.args) == 2
                and mask.expr.args[0].expr == 1 and mask.expr.args[1] == (0, sp.true)):
            return None
        if mask.dims != base.dims:
            self.fail(stmt, f"a {dims_str(mask.dims)} mask cannot index a {dims_str(base.dims)} tensor "
                            "(a masked assignment needs the mask in the tensor's own shape)")
        return Index(base.dims, None, mask.expr)

    # -- results ---------------------------------------------------------
    def final(self, rec: Assignment):
        return self.versions[rec.versions[-1]]

    def expand(self, expr, local_for=None):
        """Replace version symbols by their values.

        With ``local_for``, the final value of every *other* graded name is the
        true adjoint instead, so a line is judged on its own, given its inputs;
        except a name for the same gradient (``dlogits = dlogits_fast``), whose
        value is the answer itself, not an input.
        """
        finals = {rec.versions[-1]: rec for rec in self.assignments.values()}
        own = self.assignments[local_for].tensor if local_for in self.assignments else None
        for _ in range(len(self.versions) + 2):
            subs = {}
            for s in expr.free_symbols:
                if s in self.versions:
                    rec = finals.get(s)
                    if local_for is not None and rec is not None and rec.name != local_for \
                            and rec.tensor != own:
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


    def version_closure(self, rec):
        """Version symbols ``rec``'s final value reads, through its own earlier versions
        (``dx = ...; dx += ...``) but not through other graded names."""
        finals = {r.versions[-1] for r in self.assignments.values() if r.name != rec.name}
        seen, stack = set(), [rec.versions[-1]]
        while stack:
            s = stack.pop()
            v = self.versions.get(s)
            if not isinstance(v, Val):
                continue
            for f in v.expr.free_symbols:
                if f in self.versions and f not in seen:
                    seen.add(f)
                    if f not in finals:
                        stack.append(f)
        return seen
