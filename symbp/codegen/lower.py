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

``statements`` turns rows of expressions into lines (common subexpressions,
temporaries) and calls ``lower_expr`` for each. Anything the printer cannot
lower raises ``LoweringError`` naming it.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass

import sympy as sp
from sympy.printing.precedence import PRECEDENCE, precedence
from sympy.printing.pytorch import TorchPrinter

from symbp.codegen.contractions import Contractions, broadcast
from symbp.functions import sigmoid
from symbp.printing import PositiveFirst, shape_text
from symbp.spec import ArgmaxMask, Max, Spec, SpecError, Sum

_ONTO_FLOAT = object()  # printing an argument that torch.add/addcmul computes in its base's dtype
DONATED = "donated"  # owner of code that computes in the caller's donated incoming gradient


def floating_tensors(spec) -> set:
    """The symbols of ``spec``'s tensors that are floating point whatever the data's dtypes: the
    inputs, the parameters and every binding computed from one of them."""
    floats = set()
    for t in spec.tensors.values():  # in declaration order: a binding after what it reads
        if t.role in ("input", "param") or (t.expr is not None and t.expr.free_symbols & floats):
            floats.add(t.symbol)
    return floats


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
    donated_code: str = ""  # the code when the caller donates the incoming gradient ("" = the same)

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
        # data arithmetic takes its dtype too; the incoming gradient may be a plain number
        self.data_like = None if float_like is None else (
            f"{float_like}.dtype" if float_like in spec.tensors else f"_float_dtype({float_like})")
        self.sizes_used: set = set()  # axis sizes the printed code names (shapes, one-hot widths)
        self.env = dims  # Symbol -> dims, for tensors, adjoints and temporaries
        self._memo: dict = {}
        self._floats: set | None = None  # symbols that are floating point whatever the data
        self._stack: list = []  # the expressions being printed, innermost last
        self._casting = False  # inside arithmetic on data alone: every data tensor is cast
        # in place (backward passes only): which printed code computes a tensor that nothing else
        # holds, and what it is computed from (see ``_may_overwrite``)
        self.in_place = False
        self.donated = None  # the incoming gradient, where the caller lets this statement overwrite it
        self._owned: dict = {}  # code -> frozenset of sources, or DONATED
        self._sources_of: dict = {}  # temporary or target name -> frozenset of sources
        self._forward_sources: dict = {}

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

    # -- data arithmetic ----------------------------------------------------
    def _print(self, expr, **kwargs):
        """Prints ``expr`` knowing its parent, and whether it is arithmetic on data alone:
        ``_print_Symbol`` reads both (see ``_data_cast``)."""
        self._stack.append(expr)
        try:
            with self.casting_data(self._data_arithmetic(expr)):
                return super()._print(expr, **kwargs)
        finally:
            self._stack.pop()

    @contextmanager
    def casting_data(self, on: bool):
        """Inside, with ``on``, every data tensor printed takes the layer's dtype."""
        before = self._casting
        self._casting = before or on
        try:
            yield
        finally:
            self._casting = before

    def _data_arithmetic(self, e) -> bool:
        """Whether ``e`` computes on data tensors alone (no floating tensor among what it reads) and
        is more than one tensor or a plain product of them: ``(3/n)*(j*k)``, ``exp(j*k)``,
        ``Sum(n, j)``, ``Max(c, m)`` (a maximum of bool data is bool, which ``-`` refuses)."""
        if (self.data_like is None or not isinstance(e, sp.Expr) or e.is_Symbol or e.is_Number
                or isinstance(e, (ArgmaxMask, sp.Piecewise))):
            return False
        if isinstance(e, sp.Mul) and all(f.is_Symbol for f in e.args):
            return False
        tensors = [s for s in e.free_symbols if self._is_tensor_value(s)]
        return bool(tensors) and not self._surely_float(e)

    def _print_onto_float(self, e) -> str:
        """``e`` as an argument of ``torch.add``/``addcmul`` onto a floating base: torch computes
        those in the base's dtype, so a data tensor there needs no cast."""
        self._stack.append(_ONTO_FLOAT)
        try:
            return self._print(e)
        finally:
            self._stack.pop()

    def _data_cast(self, s) -> bool:
        """Whether data tensor ``s`` must take the layer's dtype (``data_like``) where it is printed.
        Data are numbers of the layer, but torch computes in the data's own dtype: ``(1/3)*j``
        for int64 ``j`` in its default float32 (rounding a float64 layer at 1e-8), ``1 - m`` and
        ``-m`` for a bool mask not at all, ``m1 + m2`` as a logical or. Inside arithmetic on data
        alone every data tensor is cast; elsewhere a factor of a product with other tensors and
        positive integers (``m*x``, ``2*k*j``), a reduction's body, a comparison and a bare data
        statement are exact in any dtype and stay as they are."""
        if self.data_like is None or s.name == self.float_like or not self._is_tensor_value(s) \
                or self._surely_float(s):
            return False
        if self._casting:
            return True
        parent = self._stack[-2] if len(self._stack) > 1 else None
        exact = (Sum, Max, sp.core.relational.Relational, sp.logic.boolalg.Boolean)
        if parent is None or parent is _ONTO_FLOAT or isinstance(parent, exact):
            return False
        if isinstance(parent, sp.Mul):
            return not all(a is s or (a.is_Integer and a > 0) or (not a.is_Number and self.dims(a))
                           for a in parent.args)
        return True

    def _is_tensor_value(self, s) -> bool:
        """A tensor of numbers (not one-hot classes, which print in ``float_like``'s dtype)."""
        if self.spec.is_tensor(s):
            return self.spec.tensor_of(s).role != "classes"
        return s in self.env and bool(self.env[s])

    def mark_float(self, sym, expr) -> None:
        """Record that temporary ``sym`` (bound to ``expr``) is floating point if ``expr`` is."""
        if self._surely_float(expr):
            self._floats.add(sym)

    # -- in place ---------------------------------------------------------
    def begin_statement(self, donated=None) -> None:
        """A new statement: no code is owned yet; ``donated`` is the incoming gradient where
        the caller lets this statement compute in it."""
        self.donated = donated
        self._owned = {}

    def note_sources(self, name: str, expr) -> None:
        """Record what temporary or target ``name`` (bound to ``expr``) is computed from."""
        self._sources_of[name] = self._sources(expr)

    def _sources(self, e) -> frozenset:
        """The arguments (inputs, parameters, data, the incoming gradient) that ``e`` is computed
        from. Under ``torch.func.vmap`` a result is batched exactly when one of them is."""
        out = set()
        for s in e.free_symbols:
            if s.name in self._sources_of:
                out |= self._sources_of[s.name]
            elif self.spec.is_tensor(s):
                t = self.spec.tensor_of(s)
                if t.expr is None or t.role == "adjoint":
                    out.add(s.name)
                else:
                    if s.name not in self._forward_sources:
                        self._forward_sources[s.name] = self._sources(t.expr)
                    out |= self._forward_sources[s.name]
            elif s in self.env and self.env[s]:  # a tensor of unknown origin: its own source
                out.add(s.name)
        return frozenset(out)

    def _in_donated(self, e, base) -> bool:
        """Whether ``e``, built on ``base``, may compute in the donated gradient: ``base`` is it, and
        ``e`` is the statement's expression or the large factor of it (``k*(dy - ...)``), so the
        result is what the statement returns."""
        if (self.donated is None or base != self.donated or not self._stack
                or self.dims(e) != self.dims(self.donated)):
            return False
        root = self._stack[0]
        return e is root or (isinstance(root, sp.Mul) and len(self._stack) > 1 and self._stack[1] is e)

    def _may_overwrite(self, owner, operands) -> bool:
        """Whether an in-place op may write into a tensor owned by ``owner`` reading ``operands``.

        A fresh result (``owner`` its sources) can take any operand computed from no other
        arguments than it: under ``vmap`` an unbatched tensor cannot be written with a batched
        one. The donated gradient is the caller's promise of no ``vmap``; the statement reads it
        once, as the base, so no operand reads it after it changed."""
        if owner is None:
            return False
        if owner is DONATED:
            return True
        return self._sources(sp.Mul(*operands)) <= owner

    # -- leaves -----------------------------------------------------------
    def _print_Symbol(self, s):
        if self._data_cast(s):
            return f"{s.name}.to({self.data_like})"
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
        expanded = self._expand_one_plus(e)
        if expanded is not None:
            return expanded
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
        spread = self._spread(coeff * sp.Mul(*scalar), big)
        if spread is not None:  # ``(g/n)*(n*dy - b)`` is ``g*(dy - b/n)``: the 1/n costs no big op
            code = self._print(spread)
            if not small:
                return code
            small_code = self._print_small(sp.Mul(*small))
            scaled = self._scale_in_place(e, spread, code, sp.Mul(*small), small_code)
            if scaled is not None:
                return scaled
            if not _is_call(code) and precedence(spread) <= PRECEDENCE["Mul"]:
                code = f"({code})"
            return f"{small_code}*{code}"
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
            parts.append(self._print_small(sp.Mul(*small), bool(parts)))
        left = "*".join(parts) or "1"
        if den != 1:
            left += "/" + self.parenthesize(den, PRECEDENCE["Mul"])
        if len(parts) > 1 or den != 1:
            left = f"({left})"
        big_code = self.parenthesize(big, PRECEDENCE["Mul"])
        scaled = self._scale_in_place(e, big, big_code, e / big, f"{sign}{left}")
        if scaled is not None:
            return scaled
        return f"{sign}{left}*{big_code}"

    def _scale_in_place(self, e, big, big_code, small, small_code):
        """``small*big`` as ``big.mul_(small)`` where ``big`` prints as a tensor of ``e``'s dims that
        nothing else holds and ``small`` may be written into it; else None."""
        owner = self._owned.get(big_code)
        if owner is None or self.dims(big) != self.dims(e) or not self._may_overwrite(owner, [small]):
            return None
        if _wrapped(small_code):  # an argument needs no parentheses of its own
            small_code = small_code[1:-1]
        code = f"{big_code}.mul_({small_code})"
        self._own(code, owner)
        return code

    def _expand_one_plus(self, e):
        """``a*(1 + c*f + ...)`` as ``torch.addcmul(a, a, f, value=c)``, one call per term, when ``a``
        is a named floating tensor as large as the product and every other term is a number
        times one tensor (``dh*(1 - h**2)`` is two calls, not three); else None."""
        factors = sp.Mul.make_args(e)
        if len(factors) != 2:
            return None
        for a, total in (factors, factors[::-1]):
            if not (a.is_Symbol and isinstance(total, sp.Add) and self.dims(a) == self.dims(e)
                    and self._surely_float(a)):
                continue
            one, rest = total.as_coeff_Add()
            splits = [self._split_term(t) for t in sp.Add.make_args(rest)]
            if one != 1 or not all(len(fs) == 1 and (c in (1, -1) or self._foldable(c)) for c, fs in splits):
                continue
            code = self._print(a)
            owner = DONATED if len(splits) == 1 and self._in_donated(e, a) else None
            for i, (c, (f,)) in enumerate(splits):
                value = "" if c == 1 else f", value={self._coefficient(c)}"
                args = f"{self._print(a)}, {self._print_onto_float(f)}{value}"
                if self._may_overwrite(owner, [a, f]):
                    code = f"{code}.addcmul_({args})"
                else:
                    code = f"torch.addcmul({code}, {args})"
                    read = a * sp.Mul(*[g for _, (g,) in splits[:i + 1]])
                    owner = self._sources(read) if self.in_place else None
            self._own(code, owner)
            return code
        return None

    def _own(self, code: str, owner) -> None:
        if owner is not None:
            self._owned[code] = owner

    def _print_small(self, inner, after_scale: bool = True) -> str:
        """The smaller tensors of a product, parenthesised as one factor where needed."""
        code = super()._print_Mul(inner) if isinstance(inner, sp.Mul) else self._print(inner)
        if not inner.is_Symbol and (after_scale or precedence(inner) < PRECEDENCE["Mul"]):
            code = f"({code})"  # a sum, or anything that a product would split
        return code

    # -- scaled sums: coefficients ride on add/addcmul ---------------------
    def _split_term(self, term):
        """``(coefficient, tensor factors)`` of one term of a sum. A factor with no dims may be a
        Python number at run time (a scalar temporary, ``dy`` passed as 1.0): it is coefficient."""
        factors = sp.Mul.make_args(term)
        return (sp.Mul(*[f for f in factors if not self.dims(f)]), [f for f in factors if self.dims(f)])

    def _foldable(self, c) -> bool:
        """A coefficient ``alpha=``/``value=`` can take: numbers and axis sizes only (an option
        or a 0-d tensor there would be a tensor argument, which those refuse or sync on)."""
        return c not in (1, -1) and c.free_symbols <= set(self.spec.axis_list)

    def _spread(self, scale, big):
        """``scale*big`` as one sum when ``big`` is a sum and spreading the scale leaves some
        term unscaled (that term is then the base the others add onto); else None."""
        if scale == 1 or not isinstance(big, sp.Add) or not self._foldable(scale):
            return None
        terms = [scale * t for t in big.args]
        split = [self._split_term(t) for t in terms]
        if any(not fs for _, fs in split) or not any(c in (1, -1) for c, _ in split):
            return None
        return sp.Add(*terms, evaluate=False)

    def _print_Add(self, e, order=None):
        """A sum of tensor terms with scaled terms ``c*a`` and ``c*a*b``: ``torch.add(base, a,
        alpha=c)`` and ``torch.addcmul(base, a, b, value=c)``. A Python number times a tensor
        is a whole extra torch call (and a scalar-to-tensor copy), the costliest part of a small
        step; as ``alpha``/``value`` it is free. Anything else prints as plain arithmetic."""
        hot = self._minus_one_hot(e)
        if hot is not None:
            return hot
        split = [(t, *self._split_term(t)) for t in self._as_ordered_terms(e, order=order)]
        if any(not fs for _, _, fs in split):  # a number among the terms: plain arithmetic
            return super()._print_Add(e, order=order)
        folds = [self._foldable(c) and len(fs) <= 2 and self._mean(t) is None for t, c, fs in split]
        rest = [s for s, f in zip(split, folds) if not f]
        fold = [s for s, f in zip(split, folds) if f]
        # the base must be floating point: with integer tensors only, alpha=/value= would be
        # truncated to an integer (or refused); a scaled float term joins the base if need be
        if not any(self._surely_float(t) for t, _, _ in rest):
            first = next((i for i, (t, _, _) in enumerate(fold) if self._surely_float(t)), None)
            if first is None:
                return super()._print_Add(e, order=order)
            rest.append(fold.pop(first))
        # a data tensor rides on torch.add (``p - t`` with bool or int ``t``: computed in the
        # base's dtype) while another floating term is left as the base, right onto it, before
        # the scaled terms. A plain product of two does not ride on addcmul: addcmul does not
        # round the product, so ``g*dy - mean(dxhat)`` with ``dxhat = g*dy`` would no longer
        # cancel to exactly zero where it must (a layer norm over one feature)
        data = []
        for term in list(rest):
            t, c, fs = term
            others = [r for r in rest if r is not term]
            if (c in (1, -1) and len(fs) == 1 and fs[0].is_Symbol and self._is_tensor_value(fs[0])
                    and not self._surely_float(fs[0]) and any(self._surely_float(r[0]) for r in others)):
                rest.remove(term)
                data.append(term)
        fold = data + fold
        if not fold:
            return super()._print_Add(e, order=order)
        rest = [t for t, _, _ in rest]
        code = self._print(sp.Add(*rest, evaluate=False)) if len(rest) > 1 else self._print(rest[0])
        # in place where safe: onto the donated gradient, or onto the previous call's fresh result
        # when that is already as large as the sum (``torch.addcmul(dy, ...).add_(b)``)
        owner = DONATED if len(rest) == 1 and self._in_donated(e, rest[0]) else None
        done = list(rest)
        have = self.dims(sp.Add(*rest))
        for _, c, fs in fold:  # torch.add with a negative alpha, not torch.sub: sub refuses bool masks
            args = ", ".join(self._print_onto_float(f) for f in fs)
            extra = (f", value={self._coefficient(c)}" if len(fs) == 2 else f", alpha={self._coefficient(c)}"
                     ) if c != 1 else ""
            call = "addcmul" if len(fs) == 2 else "add"
            done.append(sp.Mul(*fs))
            grown = broadcast(have, self.dims(sp.Mul(*fs)))
            if grown == have and self._may_overwrite(owner, fs):
                code = f"{code}.{call}_({args}{extra})"
            else:
                code = f"torch.{call}({code}, {args}{extra})"
                owner = self._sources(sp.Add(*done)) if self.in_place else None
            have = grown
        self._own(code, owner)
        return code

    def _minus_one_hot(self, e):
        """``probs - Y`` (a tensor plus a number times one-hot classes of the same dims) as one
        ``scatter_add`` into the tensor: no one-hot is built (three calls fewer). Only for a
        named floating-point tensor, whose own ``new_full`` gives the added values its dtype."""
        if len(e.args) != 2:
            return None
        for hot, rest in (e.args, e.args[::-1]):
            coeff, y = hot.as_coeff_Mul()
            classes = y.is_Symbol and self.spec.is_tensor(y) and self.spec.tensor_of(y).role == "classes"
            if (classes and rest.is_Symbol and coeff.is_Number and self._surely_float(rest)
                    and self.dims(rest) == self.dims(y)
                    and self.dims(y)[-1:] == (self.spec.tensor_of(y).class_axis,)):
                return (f"{rest.name}.scatter_add(-1, {y.name}.unsqueeze(-1), "
                        f"{rest.name}.new_full((*{y.name}.shape, 1), {float(coeff)!r}))")
        return None

    def _surely_float(self, e) -> bool:
        """Whether ``e`` is a floating-point tensor whatever the data's dtypes: it reads an
        input, a parameter, a gradient, or a binding computed from one of those."""
        if self._floats is None:
            self._floats = floating_tensors(self.spec)
        return any(s in self._floats or (self.spec.is_tensor(s) and self.spec.tensor_of(s).role == "adjoint")
                   for s in e.free_symbols)

    def _coefficient(self, c) -> str:
        """A scalar as Python code: a constant folded to one float, else ``num/den`` of sizes."""
        if c.is_Integer:
            return str(c)
        if not c.free_symbols:
            return f"{c.p}/{c.q}" if c.is_Rational else repr(float(c))
        num, den = sp.fraction(c)
        code = self._print(num) if num.is_Number else self.parenthesize(num, PRECEDENCE["Mul"])
        return code if den == 1 else f"{code}/{self.parenthesize(den, PRECEDENCE['Mul'])}"

    def parenthesize(self, item, level, strict=False):
        """SymPy's rule, except that a call such as ``torch.add(...)`` never needs parentheses."""
        code = self._print(item)
        prec = precedence(item)
        if (prec < level or (not strict and prec <= level)) and not _is_call(code):
            return f"({code})"
        return code

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

    def _print_log(self, e):
        """``log(sigmoid(x))`` is ``logsigmoid``: finite where sigmoid underflows to 0 (x near -1000)."""
        if isinstance(e.args[0], sigmoid):
            return f"torch.nn.functional.logsigmoid({self._print(e.args[0].args[0])})"
        return f"torch.log({self._print(e.args[0])})"

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
        numbers = all(expr.is_Number for expr, _ in pairs)
        if numbers:  # a step: take the dtype of a float tensor
            like = self.float_like
            if like is None:
                raise LoweringError(f"{e}: a piecewise constant needs a floating-point tensor in scope")
            if len(pairs) == 2 and pairs[0][0] == 1 and pairs[1] == (0, sp.true):
                return f"{self._print(pairs[0][1])}.to({like}.dtype)"
            pairs = [(sp.Symbol(f"{like}.new_tensor({float(v)!r})"), c) for v, c in pairs]
        code = self._print(pairs[-1][0])
        if pairs[-1][1] != sp.true:
            raise LoweringError(f"{e}: the last branch of a Piecewise must be the 'True' (otherwise) branch")
        # Python scalars with an option among them: torch.where alone would make them float32
        if not numbers and not any(self.dims(expr) for expr, _ in pairs):
            if self.float_like is None:
                raise LoweringError(f"{e}: a piecewise scalar needs a floating-point tensor in scope")
            code = f"{self.float_like}.new_tensor({code})"
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
        whole = e.is_Symbol or isinstance(e, (Sum, Max, ArgmaxMask)) or _is_call(code)
        if not whole or code.startswith("-"):
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


def _is_call(code: str) -> bool:
    """``torch.f(...)``, ``name.method(...)`` or a chain of calls (``torch.f(...).g_(...)``) and
    nothing else outside parentheses: a whole call needs no parentheses around it."""
    if re.match(r"[A-Za-z_][\w.]*\(", code) is None or not code.endswith(")"):
        return False
    depth = 0
    for ch in code:
        if depth == 0 and not (ch.isalnum() or ch in "_.("):
            return False
        depth += ch == "("
        depth -= ch == ")"
    return depth == 0


def _wrapped(code: str) -> bool:
    """``(...)``: the parenthesis that opens ``code`` is the one that closes it."""
    if not code.startswith("("):
        return False
    depth = 0
    for i, ch in enumerate(code):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0:
            return i == len(code) - 1
    return False


def shape_code(dims) -> str:
    if not dims:
        return "(())"
    return "(" + ", ".join("1" if a == 1 else a.name for a in dims) + ("," if len(dims) == 1 else "") + ")"


def lower_expr(printer: TorchCode, expr, target_dims) -> str:
    """Code for ``expr`` laid out in ``target_dims``."""
    with printer.casting_data(printer._data_arithmetic(expr)):  # a statement on data alone (a mean of k)
        return _lower_expr(printer, expr, target_dims)


def _lower_expr(printer: TorchCode, expr, target_dims) -> str:
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
