"""SymPy -> torch source: element expressions become vectorised tensor code.

Builds on SymPy's ``TorchPrinter`` (functions, sums, products) and adds the
spec's own nodes, dispatched by ``_print_<Class>`` as SymPy's printers do:

* a tensor prints as its name; every tensor lives in the dims its spec gives
  it (``(1, d)`` is a kept size-one dim), so torch's broadcasting lines them
  up and nothing needs reshaping;
* ``Sum(k, e)`` prints as ``e.sum(dim, keepdim=True)``; when the operands of
  ``e`` cannot broadcast (``x[n,i] * W[i,o]``) the sum is a contraction and
  prints as a matmul (``x @ W``, ``x.T @ dy``), or ``einsum`` otherwise;
* one-hot class data is looked up where a lookup fits: ``Sum(c, Y*T)`` is
  ``T.gather``, ``Sum(v, Y*C)`` is ``C[X]``, ``Sum(c, Y*W)`` with ``W`` (d, c)
  is ``W[:, Y]`` and a sum over all index dims of ``Y*T`` is ``index_add_``;
  otherwise (and a lone one-hot) it is a scatter of ones into zeros;
* ``Max`` is ``amax``; its adjoint mask splits ties evenly (``_max_mask``).

``sympy.cse`` names repeated subexpressions; contractions are pulled out
first, so that a temporary rarely holds a product that only a matmul can join.
Anything the printer cannot lower raises ``LoweringError`` naming it.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp
from sympy.printing.precedence import PRECEDENCE, precedence
from sympy.printing.pytorch import TorchPrinter

from symbp.codegen.contractions import Contractions, broadcast
from symbp.printing import PositiveFirst, shape_text
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
    guard: str = ""  # a condition the statement runs under ("" = always)
    sizes: frozenset = frozenset()  # axis sizes its code names beyond its expression's symbols
    reads: frozenset = frozenset()  # the names its expression reads (tensors, temporaries, sizes)

    @property
    def note(self) -> str:
        """The trailing comment: the shape, then what the statement is."""
        return shape_text(self.dims) + (f" {self.comment}" if self.comment else "")


class TorchCode(Contractions, PositiveFirst, TorchPrinter):
    """Prints element expressions of one spec as torch code and tracks dims."""

    def __init__(self, spec: Spec, dims: dict, float_like: str | None = None):
        super().__init__({"torch_version": "any", "fully_qualified_modules": True})
        self.spec = spec
        self.float_like = float_like  # a floating tensor in scope: one-hot data takes its dtype
        self.sizes_used: set = set()  # axis sizes the printed code names (shapes, one-hot widths)
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
            if self.float_like is None:
                raise LoweringError(f"one-hot {t.name} needs a floating-point tensor to take its dtype from")
            self.sizes_used.add(t.class_axis.name)
            # in the dtype and device of a float tensor in scope (never int64 mixed into float math),
            # and by a scatter: one_hot's range check reads the indices on the host, a sync per call
            return (f"{self.float_like}.new_zeros((*{t.name}.shape, {t.class_axis.name}))"
                    f".scatter_(-1, {t.name}.unsqueeze(-1), 1.0)")
        return s.name

    def _print_Pow(self, e):
        if not e.free_symbols:  # a constant such as 1/sqrt(pi)
            return repr(float(e))
        if not any(self.spec.is_tensor(s) or s in self.env for s in e.free_symbols):
            base = self.parenthesize(e.base, PRECEDENCE["Pow"], strict=True)  # sizes, options: Python numbers
            return f"{base}**{int(e.exp)}" if e.exp.is_Integer else f"{base}**({float(e.exp)!r})"
        if e.exp == sp.Rational(1, 2):
            return f"torch.sqrt({self._print(e.base)})"
        if e.exp == sp.Rational(-1, 2):
            return f"torch.rsqrt({self._print(e.base)})"
        base = self.parenthesize(e.base, PRECEDENCE["Pow"], strict=True)
        if e.exp == -1:
            return f"1/{base}"
        if e.exp.is_Integer:
            return f"{base}**{int(e.exp)}"
        if e.exp.is_Rational:
            return f"{base}**({float(e.exp)!r})"
        raise LoweringError(f"unsupported power {e}")

    def _print_Mul(self, e):
        """Multiply the small factors together first: ``(g*v/n)*big`` costs one big op.

        A 0/1 step factor (``relu``'s derivative) selects instead of multiplying:
        ``torch.where(x > 0, rest, 0)``."""
        mean = self._mean(e)
        if mean is not None:
            return mean
        coeff, rest = e.as_coeff_Mul()
        factors = sp.Mul.make_args(rest)
        steps = [f for f in factors if isinstance(f, sp.Piecewise) and len(f.args) == 2
                 and f.args[0].expr == 1 and f.args[1].expr == 0 and f.args[1].cond == sp.true]
        if steps and len(factors) > 1:
            step = steps[0]
            others = coeff * sp.Mul(*[f for f in factors if f is not step])
            if self.spec.axes_of(others) or any(s in self.env for s in others.free_symbols):
                return f"torch.where({self._print(step.args[0].cond)}, {self._print(others)}, 0)"
        # Python scalars (sizes, options, numbers) first, then the smaller tensors, then the largest
        scalar = [f for f in factors if not any(self.spec.is_tensor(s) or s in self.env
                                                for s in f.free_symbols)]
        tensors = [f for f in factors if f not in scalar]
        ranks = {f: sum(1 for a in self.dims(f) if a != 1) for f in tensors}
        top = max(ranks.values(), default=0)
        small = [f for f in tensors if ranks[f] < top]
        if not tensors or top == 0 or (not small and not scalar):
            return super()._print_Mul(e)
        big = sp.Mul(*[f for f in tensors if ranks[f] == top])
        sign, coeff = ("-", -coeff) if coeff < 0 else ("", coeff)
        parts = []
        scale = coeff * sp.Mul(*scalar)
        num, den = sp.fraction(scale)
        if not scale.free_symbols:  # a number: Python folds it
            num, den = (scale, 1) if scale.is_Integer else (sp.Float(float(scale)), 1)
        elif num != 1:  # sizes and options: one Python expression, then one tensor op
            num, den = scale, 1
        if num != 1:
            code = self._print(num)
            parts.append(code if num.is_Symbol or num.is_Number else f"({code})")
        if small:
            inner = sp.Mul(*small)
            code = super()._print_Mul(inner) if isinstance(inner, sp.Mul) else self._print(inner)
            if not inner.is_Symbol and (parts or precedence(inner) < PRECEDENCE["Mul"]):
                code = f"({code})"  # a sum, or anything that a product would split
            parts.append(code)
        left = "*".join(parts) or "1"
        if den != 1:
            left += "/" + self.parenthesize(den, PRECEDENCE["Mul"])
        if len(parts) > 1 or den != 1:
            left = f"({left})"
        return f"{sign}{left}*{self.parenthesize(big, PRECEDENCE['Mul'])}"

    def _mean(self, e, target_dims=None):
        """``x.mean(dims, keepdim=True)`` for a sum divided by the sizes of exactly the axes it
        sums (``Sum(n, x)/n``), times whatever scalar is left; None for any other product.
        With ``target_dims`` the summed dims are dropped when that is the wanted layout."""
        sums = [f for f in sp.Mul.make_args(e) if isinstance(f, Sum)]
        if len(sums) != 1 or self._contraction(sums[0]) is not None:
            return None
        axes, body = [], sums[0]
        while isinstance(body, Sum) and self._contraction(body) is None:
            axes.append(body.axis)
            body = body.body
        if isinstance(body, Sum) or not axes:
            return None
        scale = e / sums[0] * sp.Mul(*axes)
        if scale.free_symbols & (set(axes) | set(self.env)) or any(self.spec.is_tensor(s)
                                                                 for s in scale.free_symbols):
            return None
        inner = self.dims(body)
        pos = sorted(self._pos(body, a) for a in axes)
        dims = pos[0] if len(pos) == 1 else tuple(pos)
        if target_dims is None:
            call = f"mean({dims}, keepdim=True)"
        elif tuple(a for a in inner if a not in axes) == tuple(target_dims):
            call = "mean()" if len(pos) == len(inner) else f"mean({dims})"
        else:
            return None
        code = self._method(body, call)
        if scale == 1:
            return code
        if scale == -1:
            return f"-{code}"
        factor = self._print(scale)
        return f"{factor if scale.is_Symbol or scale.is_Number else f'({factor})'}*{code}"

    # -- elementwise functions (symbp.functions says which derivative each takes at a kink) --
    def _print_sigmoid(self, e):
        return f"torch.sigmoid({self._print(e.args[0])})"

    def _print_softplus(self, e):
        return f"torch.nn.functional.softplus({self._print(e.args[0])})"

    def _print_Heaviside(self, e):
        x = e.args[0]
        at_zero = e.args[1] if len(e.args) > 1 else sp.S.Half
        return f"torch.heaviside({self._print(x)}, {self._number_like(x, at_zero)})"

    def _print_Relational(self, e):
        op = {"==": "==", "!=": "!=", ">": ">", "<": "<", ">=": ">=", "<=": "<="}[e.rel_op]
        return f"({self._print(e.lhs)} {op} {self._print(e.rhs)})"

    def _print_And(self, e):
        return " & ".join(self._print(a) for a in e.args)

    def _print_Or(self, e):
        return " | ".join(self._print(a) for a in e.args)

    def _print_Piecewise(self, e):
        """``torch.relu`` / ``torch.maximum`` where the branches are theirs, else nested ``torch.where``."""
        pairs = [(p.expr, p.cond) for p in e.args]
        if len(pairs) == 2 and pairs[1] == (0, sp.true) and pairs[0][1] == (pairs[0][0] > 0):
            return f"torch.relu({self._print(pairs[0][0])})"
        if len(pairs) == 3 and pairs[2][1] == sp.true:
            (a, ca), (b, cb), (mid, _) = pairs
            for op, fn in ((sp.StrictGreaterThan, "maximum"), (sp.StrictLessThan, "minimum")):
                if ca == op(a, b) and cb == op(b, a) and sp.expand(mid - (a + b) / 2) == 0:
                    return f"torch.{fn}({self._print(a)}, {self._print(b)})"
        if all(expr.is_Number for expr, _ in pairs):  # a step: take the dtype of a float tensor
            like = self.float_like
            if like is None:
                raise LoweringError(f"{e}: a piecewise constant needs a floating-point tensor in scope")
            if len(pairs) == 2 and pairs[0][0] == 1 and pairs[1] == (0, sp.true):
                return f"{self._print(pairs[0][1])}.to({like}.dtype)"
            pairs = [(sp.Symbol(f"{like}.new_tensor({float(v)!r})"), c) for v, c in pairs]
        code = self._print(pairs[-1][0])
        if pairs[-1][1] != sp.true:
            raise LoweringError(f"{e}: the last branch of a Piecewise must be the 'True' (otherwise) branch")
        for expr, cond in reversed(pairs[:-1]):
            code = f"torch.where({self._print(cond)}, {self._print(expr)}, {code})"
        return code

    def _number_like(self, x, value) -> str:
        """A 0-d tensor of ``value`` with ``x``'s dtype and device."""
        like = self._print(x) if self.spec.axes_of(x) else self.float_like
        if like is None:
            raise LoweringError(f"cannot place the constant {value} on a tensor")
        return f"{self._method(x, 'new_tensor')}({float(value)!r})" if like != self.float_like \
            else f"{like}.new_tensor({float(value)!r})"

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
        """Where ``e`` attains its maximum, 1/(number of ties): ``amax``'s own gradient rule."""
        return f"_max_mask({self._print(e.body)}, {self._pos(e.body, e.axis)})"

    def _print_Sum(self, e):
        con = self._contraction(e)
        if con is not None:  # ``@`` binds like ``*``: keep a matmul whole inside a product
            return f"({con[0]})" if " @ " in con[0] else con[0]
        pos = self._pos(e.body, e.axis)
        return self._method(e.body, f"sum({pos}, keepdim=True)")


def shape_code(dims) -> str:
    if not dims:
        return "(())"
    return "(" + ", ".join("1" if a == 1 else a.name for a in dims) + ("," if len(dims) == 1 else "") + ")"


def lower_expr(printer: TorchCode, expr, target_dims) -> str:
    """Code for ``expr`` laid out in ``target_dims``."""
    if expr == 0 and printer.float_like is not None:  # a gradient that is identically zero
        printer.sizes_used |= {a.name for a in target_dims if a != 1}
        return f"{printer.float_like}.new_zeros{shape_code(target_dims)}"
    if isinstance(expr, Sum) and printer._contraction(expr) is None:
        axes, body = [expr.axis], expr.body
        while isinstance(body, Sum) and printer._contraction(body) is None:
            axes.append(body.axis)
            body = body.body
        inner = printer.dims(body)
        if tuple(a for a in inner if a not in axes) == tuple(target_dims) and set(axes) <= set(inner):
            pos = sorted(inner.index(a) for a in axes)  # no kept dims
            return printer._method(body, f"sum({pos[0]})" if len(pos) == 1 else f"sum({tuple(pos)})")
    if isinstance(expr, sp.Mul) and target_dims != printer.dims(expr):
        mean = printer._mean(expr, target_dims)  # a mean whose result drops the averaged dims
        if mean is not None:
            return mean
    code = printer.doprint(expr)
    if isinstance(expr, Sum) and code.startswith("(") and " @ " in code and code.endswith(")"):
        code = code[1:-1]  # a statement that is one matmul needs no parentheses
    got = printer.dims(expr)
    if got == tuple(target_dims):
        return code
    atomic = precedence(expr) >= PRECEDENCE["Atom"] or (isinstance(expr, Sum) and " @ " not in code)
    wrapped = code if atomic else f"({code})"
    have = {a for a in got if a != 1}
    want = {a for a in target_dims if a != 1}
    if have < want and broadcast(got, tuple(target_dims)) == tuple(target_dims):
        printer.sizes_used |= {a.name for a in target_dims if a != 1}
        return f"{wrapped}.expand{shape_code(target_dims)}"  # a broadcast: a view, no copy
    if have < want and [a for a in got if a != 1] == [a for a in target_dims if a in have]:
        printer.sizes_used |= {a.name for a in target_dims if a != 1}
        kept = tuple(a if a in have else 1 for a in target_dims)  # drop kept dims, then broadcast
        return f"{wrapped}.reshape{shape_code(kept)}.expand{shape_code(target_dims)}"
    if have != want:
        raise LoweringError(f"{expr} has dims {got}, expected {tuple(target_dims)}")
    if [a for a in got if a != 1] != [a for a in target_dims if a != 1]:  # the same axes, reordered
        if 1 in got or 1 in target_dims:
            raise LoweringError(f"{expr} has dims {got}, expected {tuple(target_dims)}")
        return f"{wrapped}.permute{tuple(got.index(a) for a in target_dims)}"
    printer.sizes_used |= {a.name for a in target_dims if a != 1}
    return f"{wrapped}.reshape{shape_code(target_dims)}"


def lower_statements(spec: Spec, rows, env: dict, cse=True, temp_prefix="t", float_like=None,
                     known=None) -> list:
    """CSE over ``rows = [(target, expr, dims, comment)]``, then lower each to a Stmt.

    A temporary equal to an expression in ``known`` (``{expr: name}``, such as the chunked
    gradients) takes that name. A ``LoweringError`` names the row (binding or gradient) it came from.
    """
    try:
        return _lower_statements(spec, rows, env, cse, temp_prefix, float_like, known or {})
    except LoweringError as e:
        if len(rows) == 1 or not cse:
            for target, expr, dims, _ in rows:
                try:
                    _lower_statements(spec, [(target, expr, dims, "")], env, False, temp_prefix,
                                      float_like, {})
                except LoweringError as inner:
                    raise LoweringError(f"spec {spec.name!r}, {target}: {inner}") from None
        raise LoweringError(f"spec {spec.name!r}: {e}") from None


def _lower_statements(spec, rows, env, cse, temp_prefix, float_like, known) -> list:
    env = dict(env)
    printer = TorchCode(spec, env, float_like)
    exprs = [r[1] for r in rows]
    targets = {r[0] for r in rows}
    taken = set(spec.tensors) | {s.name for s in env}
    known = {e: n for e, n in known.items() if n not in targets and n not in spec.tensors}
    chunked_names = set(known.values())
    names = (sp.Symbol(f"{temp_prefix}{i}", real=True) for i in range(10**6)
             if f"{temp_prefix}{i}" not in taken)

    def name_for(expr):
        if expr in known:
            return sp.Symbol(known.pop(expr), real=True)
        return next(names)
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
            sym = name_for(node)
            code, dims = printer._contraction(node)
            env[sym] = dims
            note = (f"fused: as {sym.name} in the chunked pass, used more than once"
                    if sym.name in chunked_names else "contraction used more than once")
            stmts.append(Stmt(sym.name, code, dims, note, reads=_names(node)))
            repl[node] = sym
    exprs = [e.xreplace(repl) for e in exprs]
    temps, reduced = sp.cse(exprs, symbols=names, order="none") if cse else ([], exprs)
    temps, reduced = _fold_shared_scales(temps, reduced, printer)
    named = {sym: sp.Symbol(known.pop(sub), real=True) for sym, sub in temps if sub in known}
    notes = {s.name: f"fused: as {s.name} in the chunked pass" for s in named.values()}
    temps = [(named.get(sym, sym), sub.xreplace(named)) for sym, sub in temps]
    reduced = [e.xreplace(named) for e in reduced]
    dims_env = dict(env)
    for sym, sub in temps:
        dims_env[sym] = printer.dims(sub)
    temps, reduced, rows, comments = _name_temps_after_targets(temps, reduced, rows, dims_env)
    for sym, sub in temps:
        env[sym] = printer.dims(sub)  # the printer reads env, so later temps see this one
        note = comments.get(sym.name, notes.get(sym.name, ""))
        stmts.append(Stmt(sym.name, printer.doprint(sub), env[sym], note, reads=_names(sub)))
    for (target, _, dims, comment), e in zip(rows, reduced):
        stmts.append(Stmt(target, lower_expr(printer, e, dims), tuple(dims), comment, reads=_names(e)))
    for s in stmts:
        s.sizes = printer.sizes_used
    return stmts


def _name_temps_after_targets(temps, reduced, rows, env):
    """A temporary that is exactly one of the targets takes the target's name (and comment), and
    the target's own ``dbngain = t0`` line goes: ``dbngain = (bnraw*dy).sum(...)`` is then reused.

    Returns ``(temps, reduced, rows, comments)`` with ``comments`` keyed by renamed temporary."""
    rename, comments = {}, {}
    temp_syms = {sym for sym, _ in temps}
    for row, e in zip(rows, reduced):
        if e in temp_syms and e not in rename and env[e] == tuple(row[2]):
            rename[e] = next((s for s in env if s.name == row[0]), None) or sp.Symbol(row[0], real=True)
            comments[row[0]] = row[3]
    if not rename:
        return temps, reduced, rows, comments
    kept = [(row, e.xreplace(rename)) for row, e in zip(rows, reduced) if row[0] not in comments]
    temps = [(rename.get(sym, sym), sub.xreplace(rename)) for sym, sub in temps]
    return temps, [e for _, e in kept], [r for r, _ in kept], comments


def _fold_shared_scales(temps, reduced, printer):
    """A temporary that every statement reading it scales by the same scalar, inside a contraction
    (``dq = c*(t @ k)``, ``dk = c*(t.mT @ q)``), takes the scale itself: one multiplication of ``t``
    instead of one per use. A temporary then read once is put back in place."""
    temps = list(temps)
    for sym, sub in temps:
        printer.env[sym] = printer.dims(sub)  # a scale has no dims, so folding keeps these
    for i, (sym, sub) in enumerate(temps):
        scales, users = set(), []
        for j, e in enumerate(reduced):
            if not e.has(sym):
                continue
            sums = [f for f in sp.Mul.make_args(e) if isinstance(f, Sum) and f.has(sym)]
            rest = [f for f in sp.Mul.make_args(e) if not (isinstance(f, Sum) and f.has(sym))]
            scale = sp.Mul(*rest)
            if len(sums) != 1 or scale.has(sym) or printer.dims(scale) != () or scale == 1 \
                    or printer._contraction(sums[0]) is None or not _a_plain_factor(sym, sums[0]):
                scales.add(None)
                break
            scales.add(scale)
            users.append(j)
        later = any(s.has(sym) for _, s in temps[i + 1:])
        if len(scales) != 1 or None in scales or len(users) < 2 or later:
            continue
        (scale,) = scales
        if any(scale.has(s) for s, _ in temps[i:]):  # the scale must be known before the temporary
            continue
        temps[i] = (sym, scale * sub)
        for j in users:
            reduced[j] = reduced[j] / scale
        printer._memo.clear()  # dims and contractions were memoised on the old expressions
    return _inline_single_uses(temps, reduced)


def _a_plain_factor(sym, contraction) -> bool:
    """``sym`` multiplies the summed body once and nowhere else, so scaling it scales the sum."""
    body = contraction
    while isinstance(body, Sum):
        body = body.body
    factors = sp.Mul.make_args(body)
    return factors.count(sym) == 1 and not any(f.has(sym) for f in factors if f != sym)


def _inline_single_uses(temps, reduced):
    """Temporaries that only one expression reads, put back into it."""
    while True:
        everything = [s for _, s in temps] + list(reduced)
        once = next((k for k, (sym, _) in enumerate(temps)
                     if sum(sum(1 for n in sp.preorder_traversal(e) if n == sym) for e in everything) == 1),
                    None)
        if once is None:
            return temps, reduced
        sym, sub = temps.pop(once)
        temps = [(s, e.xreplace({sym: sub})) for s, e in temps]
        reduced = [e.xreplace({sym: sub}) for e in reduced]


def _names(expr) -> frozenset:
    return frozenset(s.name for s in expr.free_symbols)
