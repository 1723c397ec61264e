"""SymPy -> torch source: element expressions become vectorised tensor code.

Builds on SymPy's ``TorchPrinter`` (functions, sums, products) and adds the
spec's own nodes, dispatched by ``_print_<Class>`` as SymPy's printers do:

* a tensor prints as its name; every tensor lives in the dims its spec gives
  it (``(1, d)`` is a kept size-one dim), so torch's broadcasting lines them
  up and nothing needs reshaping;
* ``Sum(k, e)`` prints as ``e.sum(dim, keepdim=True)``; when the operands of
  ``e`` cannot broadcast (``x[n,i] * W[i,o]``) the sum is a contraction and
  prints as a matmul (``x @ W``, ``x.T @ dy``), or ``einsum`` otherwise;
* one-hot class data never becomes a dense matmul: ``Sum(c, Y*T)`` is
  ``T.gather``, ``Sum(v, Y*C)`` is ``C[X]`` and a sum over all index dims of
  ``Y*T`` is ``index_add_``; a lone one-hot is a scatter of ones into zeros (n, c);
* ``Max`` is ``amax``; its adjoint mask is a ``scatter`` of the argmax.

``sympy.cse`` names repeated subexpressions; contractions are pulled out
first so a temporary never broadcasts operands that only a matmul can join.
Anything the printer cannot lower raises ``LoweringError`` naming it.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp
from sympy.printing.precedence import PRECEDENCE, precedence
from sympy.printing.pytorch import TorchPrinter

from symbp.spec import ArgmaxMask, Max, Spec, SpecError, Sum


class LoweringError(SpecError):
    """An expression symbp cannot turn into torch code."""


@dataclass
class Stmt:
    """``target = code`` with the dims of the result and a comment."""

    target: str
    code: str
    dims: tuple
    comment: str = ""


def broadcast(a: tuple, b: tuple):
    """Right-aligned broadcast of two dims tuples, or None when they clash."""
    out = []
    for k in range(1, max(len(a), len(b)) + 1):
        x = a[-k] if k <= len(a) else None
        y = b[-k] if k <= len(b) else None
        if x is None or x == 1:
            out.append(y if y is not None else x)
        elif y is None or y == 1 or y == x:
            out.append(x)
        else:
            return None
    out = tuple(reversed(out))
    axes = [d for d in out if d != 1]
    return out if len(axes) == len(set(axes)) else None


class TorchCode(TorchPrinter):
    """Prints element expressions of one spec as torch code and tracks dims."""

    def __init__(self, spec: Spec, dims: dict):
        super().__init__({"torch_version": "any", "fully_qualified_modules": True})
        self.spec = spec
        self.env = dims  # Symbol -> dims, for tensors, adjoints and temporaries
        self._memo: dict = {}

    # -- dims -------------------------------------------------------------
    def dims(self, e) -> tuple:
        if e in self._memo:
            return self._memo[e]
        if e in self.env:
            out = self.env[e]
        elif e.is_Number or (e.is_Symbol and e not in self.env):
            out = ()
        elif isinstance(e, Sum):
            con = self._contraction(e)
            if con is not None:
                out = con[1]
            else:
                inner = self.dims(e.body)
                out = tuple(1 if a == e.axis else a for a in inner)
        elif isinstance(e, Max):
            out = tuple(1 if a == e.axis else a for a in self.dims(e.body))
        elif isinstance(e, ArgmaxMask):
            out = self.dims(e.body)
        else:
            out = ()
            for a in e.args:
                nxt = broadcast(out, self.dims(a))
                if nxt is None:
                    raise LoweringError(f"cannot broadcast {a} (dims {self.dims(a)}) with dims {out} in {e}")
                out = nxt
        self._memo[e] = out
        return out

    def _pos(self, e, axis) -> int:
        d = self.dims(e)
        if axis not in d:
            raise LoweringError(f"{e} has no axis {axis}")
        return d.index(axis)

    # -- leaves -----------------------------------------------------------
    def _print_Symbol(self, s):
        if self.spec.is_tensor(s) and self.spec.tensor_of(s).role == "classes":
            t = self.spec.tensor_of(s)
            if t.dims[-1] != t.class_axis:
                raise LoweringError(f"one-hot {t.name}: the class axis must be its last dim")
            # one_hot's range check reads the indices' min and max on the host (a sync per call);
            # a scatter builds the same int64 one-hot without leaving the device
            return (f"torch.zeros((*{t.name}.shape, {t.class_axis.name}), dtype=torch.long, "
                    f"device={t.name}.device).scatter_(-1, {t.name}.unsqueeze(-1), 1)")
        return s.name

    def _print_Pow(self, e):
        base = self.parenthesize(e.base, PRECEDENCE["Pow"], strict=True)
        if e.exp == -1:
            return f"1/{base}"
        if e.exp == sp.Rational(1, 2):
            return f"{base}**0.5"
        if e.exp.is_Integer:
            return f"{base}**{int(e.exp)}"
        if e.exp.is_Rational:
            return f"{base}**({float(e.exp)!r})"
        raise LoweringError(f"unsupported power {e}")

    def _print_Mul(self, e):
        """Multiply the small factors together first: ``(g*v/n)*big`` costs one big op."""
        coeff, rest = e.as_coeff_Mul()
        factors = sp.Mul.make_args(rest)
        ranks = {f: sum(1 for a in self.dims(f) if a != 1) for f in factors}
        top = max(ranks.values(), default=0)
        small = [f for f in factors if ranks[f] < top]
        if not small or top == 0:
            return super()._print_Mul(e)
        big = sp.Mul(*[f for f in factors if ranks[f] == top])
        sign, coeff = ("-", -coeff) if coeff < 0 else ("", coeff)
        scale = coeff * sp.Mul(*small)
        scale_code = super()._print_Mul(scale) if isinstance(scale, sp.Mul) else self._print(scale)
        if not (scale.is_Symbol or scale.is_Integer):
            scale_code = f"({scale_code})"
        big_code = self.parenthesize(big, PRECEDENCE["Mul"])
        return f"{sign}{scale_code}*{big_code}"

    def _print_Rational(self, e):
        return f"{e.p}/{e.q}"

    def _print_Float(self, e):
        return repr(float(e))

    def _method(self, e, call: str) -> str:
        """``(code).call`` with parentheses only where needed."""
        code = self._print(e)
        if not (e.is_Symbol or isinstance(e, (Sum, Max, ArgmaxMask))) or code.startswith("-"):
            code = f"({code})"
        return f"{code}.{call}"

    # -- reductions -------------------------------------------------------
    def _print_Max(self, e):
        return self._method(e.body, f"amax({self._pos(e.body, e.axis)}, keepdim=True)")

    def _print_ArgmaxMask(self, e):
        pos = self._pos(e.body, e.axis)
        body = self._print(e.body)
        return (f"torch.zeros_like({body}).scatter_({pos}, "
                f"{self._method(e.body, f'max({pos}, keepdim=True).indices')}, 1)")

    def _print_Sum(self, e):
        con = self._contraction(e)
        if con is not None:
            return con[0]
        pos = self._pos(e.body, e.axis)
        return self._method(e.body, f"sum({pos}, keepdim=True)")

    def _contraction(self, e):
        """``(code, dims)`` when ``e`` is a contraction, else None."""
        key = ("con", e)
        if key in self._memo:
            return self._memo[key]
        self._memo[key] = out = self._lower_contraction(e)
        return out

    def _lower_contraction(self, e):
        axes, body = [e.axis], e.body
        while isinstance(body, Sum):
            axes.append(body.axis)
            body = body.body
        coeff, factors = sp.S.One, []
        for f in sp.Mul.make_args(body):
            if not self.spec.axes_of(f) and f not in self.env:
                coeff *= f
            else:
                factors.append(f)
        onehots = [f for f in factors if self.spec.is_tensor(f)
                   and self.spec.tensor_of(f).role == "classes"]
        if len(factors) != 2:
            return None
        if onehots:
            y = self.spec.tensor_of(onehots[0])
            other = factors[1] if factors[0] == onehots[0] else factors[0]
            return self._onehot_contraction(y, other, axes, coeff)
        if len(axes) > 1:  # nested sums that are not a scatter: the inner one may be
            return None
        a, b = factors
        da, db = self.dims(a), self.dims(b)
        if broadcast(da, db) is not None:
            return None  # an ordinary elementwise product and sum
        k = e.axis
        if 1 in da or 1 in db or k not in da or k not in db:
            raise LoweringError(f"cannot lower contraction {e}")
        free = [x for x in self.spec.axis_list if (x in da or x in db) and x != k]
        ca, cb = self._print(a), self._print(b)
        if not (a.is_Symbol or isinstance(a, Sum)):
            ca = f"({ca})"
        if not (b.is_Symbol or isinstance(b, Sum)):
            cb = f"({cb})"
        if len(da) == 2 and len(db) == 2 and len(free) == 2:
            left, right = (a, b) if free[0] in da else (b, a)
            cl, cr = (ca, cb) if left is a else (cb, ca)
            dl, dr = self.dims(left), self.dims(right)
            cl = cl if dl[1] == k else f"{cl}.T"
            cr = cr if dr[0] == k else f"{cr}.T"
            code = f"{cl} @ {cr}"
        else:
            letters = {x: chr(ord("a") + i) for i, x in enumerate(self.spec.axis_list)}
            sa = "".join(letters[x] for x in da)
            sb = "".join(letters[x] for x in db)
            so = "".join(letters[x] for x in free)
            code = f"torch.einsum('{sa},{sb}->{so}', {ca}, {cb})"
        return self._scaled(coeff, code), tuple(free)

    def _onehot_contraction(self, y, other, axes, coeff):
        do = self.dims(other)
        c = y.class_axis
        name = y.name
        if axes == [c] and do == y.dims:  # pick each row's class: gather
            pos = len(do) - 1
            code = f"{self._method(other, f'gather({pos}, {name}.unsqueeze({pos}))')}"
            return self._scaled(coeff, code), tuple(1 if a == c else a for a in do)
        if axes == [c] and do and do[0] == c:  # embedding lookup: C[X]
            code = f"{self._print(other)}[{name}]"
            return self._scaled(coeff, code), tuple(y.index_dims) + tuple(do[1:])
        if set(axes) == set(y.index_dims) and do[: len(y.index_dims)] == y.index_dims:
            rest = do[len(y.index_dims):]
            shape = ", ".join(a.name for a in (c,) + tuple(rest)) + ("," if not rest else "")
            flat = ", ".join(["-1"] + [a.name for a in rest])
            body = self._print(other)
            if not other.is_Symbol:
                body = f"({body})"
            code = (f"{body}.new_zeros(({shape})).index_add_(0, {name}.reshape(-1), "
                    f"{body}.reshape({flat}))")
            return self._scaled(coeff, code), (c,) + tuple(rest)
        return None  # falls back to a dense one_hot times ``other``, still vectorised

    def _scaled(self, coeff, code):
        if coeff == 1:
            return code
        if coeff == -1:
            return f"-{code}"
        return f"{self.parenthesize(coeff, PRECEDENCE['Mul'])}*({code})"


def shape_code(dims) -> str:
    if not dims:
        return "(())"
    return "(" + ", ".join("1" if a == 1 else a.name for a in dims) + ("," if len(dims) == 1 else "") + ")"


def lower_expr(printer: TorchCode, expr, target_dims) -> str:
    """Code for ``expr`` laid out in ``target_dims``."""
    if isinstance(expr, Sum) and printer._contraction(expr) is None:
        inner = printer.dims(expr.body)
        if tuple(a for a in inner if a != expr.axis) == tuple(target_dims) and expr.axis in inner:
            return printer._method(expr.body, f"sum({inner.index(expr.axis)})")  # no kept dim
    code = printer.doprint(expr)
    got = printer.dims(expr)
    if got == tuple(target_dims):
        return code
    wrapped = code if precedence(expr) >= PRECEDENCE["Atom"] or isinstance(expr, Sum) else f"({code})"
    have = {a for a in got if a != 1}
    want = {a for a in target_dims if a != 1}
    if have < want and broadcast(got, tuple(target_dims)) == tuple(target_dims):
        return f"{wrapped}.expand{shape_code(target_dims)}"  # a broadcast: a view, no copy
    if have != want:
        raise LoweringError(f"{expr} has dims {got}, expected {tuple(target_dims)}")
    return f"{wrapped}.reshape{shape_code(target_dims)}"


def lower_statements(spec: Spec, rows, env: dict, cse=True, temp_prefix="t") -> list:
    """CSE over ``rows = [(target, expr, dims, comment)]``, then lower each to a Stmt."""
    env = dict(env)
    printer = TorchCode(spec, env)
    exprs = [r[1] for r in rows]
    taken = set(spec.tensors) | {s.name for s in env}
    names = (sp.Symbol(f"{temp_prefix}{i}", real=True) for i in range(10**6)
             if f"{temp_prefix}{i}" not in taken)
    # contractions first: each becomes a temporary of its own
    pulled, stmts = [], []
    for e in exprs:
        for node in sp.postorder_traversal(e):
            if isinstance(node, Sum) and node not in pulled and printer._contraction(node) is not None:
                pulled.append(node)
    uses = {node: sum(1 for e in exprs for n in sp.preorder_traversal(e) if n == node) for node in pulled}
    repl = {}
    for node in pulled:
        if uses[node] > 1:
            sym = next(names)
            code, dims = printer._contraction(node)
            env[sym] = dims
            stmts.append(Stmt(sym.name, code, dims, "contraction used more than once"))
            repl[node] = sym
    exprs = [e.xreplace(repl) for e in exprs]
    temps, reduced = sp.cse(exprs, symbols=names, order="none") if cse else ([], exprs)
    for sym, sub in temps:
        env[sym] = printer.dims(sub)  # the printer reads env, so later temps see this one
        stmts.append(Stmt(sym.name, printer.doprint(sub), env[sym]))
    for (target, _, dims, comment), e in zip(rows, reduced):
        stmts.append(Stmt(target, lower_expr(printer, e, dims), tuple(dims), comment))
    return stmts
