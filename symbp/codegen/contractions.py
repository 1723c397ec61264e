"""Contractions: a ``Sum`` over axes that several factors share, lowered without building the
broadcast product first.

Two operands that line up as matrices become ``@`` (with ``.mT`` and batch
dims where needed, or one reshape when several summed axes lead both);
anything else is one ``einsum``. One-hot class data is looked up where a
lookup fits (a gather, ``C[X]``, ``W[:, X]``, an ``index_add_``), and is a
scattered one-hot in an ordinary contraction otherwise. ``TorchCode`` mixes
this in.
"""

from __future__ import annotations

import sympy as sp
from sympy.printing.precedence import PRECEDENCE

from symbp.spec import Sum


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


class Contractions:
    """The contraction half of the torch printer (``self`` is a ``TorchCode``)."""

    def _contraction(self, e):
        """``(code, dims)`` when ``e`` is a contraction, else None."""
        key = ("con", e)
        if key not in self._memo:  # remember the sizes its code names, for every statement printing it
            before, self.sizes_used = self.sizes_used, set()
            self._memo[key] = (self._lower_contraction(e), frozenset(self.sizes_used))
            self.sizes_used = before | self.sizes_used
        out, sizes = self._memo[key]
        self.sizes_used |= sizes
        return out

    def _lower_contraction(self, e):
        """A sum over axes that several factors share, when summing their product would first
        build something larger than any factor: a matmul, a batched matmul, or ``einsum``."""
        axes, body = [e.axis], e.body
        while isinstance(body, Sum):
            axes.append(body.axis)
            body = body.body
        coeff, factors = sp.S.One, []
        for f in sp.Mul.make_args(body):
            if not self.spec.axes_of(f) and not (f.free_symbols & set(self.env)):  # temporaries have axes
                coeff *= f
            else:
                factors.append(f)
        if len(factors) < 2:
            return None
        onehots = [f for f in factors if self.spec.is_tensor(f)
                   and self.spec.tensor_of(f).role == "classes"]
        if onehots and len(factors) == 2:
            y = self.spec.tensor_of(onehots[0])
            other = factors[1] if factors[0] == onehots[0] else factors[0]
            picked = self._onehot_contraction(y, other, axes, coeff)
            if picked is not None:
                return picked  # else a dense one-hot (a scatter) in an ordinary contraction below
        dims = [self.dims(f) for f in factors]
        joint = dims[0]
        for d in dims[1:]:
            joint = broadcast(joint, d) if joint is not None else None
        if joint is not None:
            largest = max(len(set(d) - {1}) for d in dims)
            if len(set(joint) - {1}) <= largest:
                return None  # an ordinary elementwise product, then sums
        summed = set(axes)
        free = [x for x in self.spec.axis_list if x not in summed and any(x in d for d in dims)]
        codes = [self._operand(f) for f in factors]
        if len(factors) == 2 and 1 not in dims[0] + dims[1]:
            code = self._matmul(factors, dims, codes, axes, free)
            if code is not None:
                return self._scaled(coeff, code), tuple(free)
        letters = {x: chr(ord("a") + i) for i, x in enumerate(self.spec.axis_list)}
        spare = iter("zyxwvutsrqponm")
        subs = ["".join(letters[x] if x != 1 else next(spare) for x in d) for d in dims]
        out = "".join(letters[x] for x in free)
        code = f"torch.einsum('{','.join(subs)}->{out}', {', '.join(codes)})"
        return self._scaled(coeff, code), tuple(free)

    def _operand(self, f) -> str:
        """One factor of a matmul or einsum. Those need one dtype, so an operand computed from
        data alone (int, bool) takes the layer's (the code never depends on where it is printed,
        which the memo relies on)."""
        data = self.data_like is not None and not self._surely_float(f) \
            and any(self._is_tensor_value(s) for s in f.free_symbols)
        with self.casting_data(data):
            code = self._print(f)
        return code if f.is_Symbol or isinstance(f, Sum) else f"({code})"

    @staticmethod
    def _matmul(factors, dims, codes, axes, free):
        """A matmul where the layouts allow one: ``a @ b`` (2-d, or batched over shared leading
        axes), ``a @ W`` for extra leading axes of ``a``, or, when the summed axes lead both
        operands, one reshaped matmul ``a.reshape(-1, i).T @ b.reshape(-1, o)``."""
        (da, db), (ca, cb) = dims, codes
        if len(axes) > 1:
            lead = tuple(da[:len(axes)])
            shapes_fit = len(da) == len(db) == len(axes) + 1
            if set(lead) == set(axes) and tuple(db[:len(axes)]) == lead and shapes_fit:
                (dl, cl), (dr, cr) = ((da, ca), (db, cb)) if da[-1] == free[0] else ((db, cb), (da, ca))
                return f"{cl}.reshape(-1, {cl}.shape[-1]).T @ {cr}.reshape(-1, {cr}.shape[-1])"
            return None
        (k,) = axes
        if k not in da or k not in db:
            return None
        for (d1, c1), (d2, c2) in (((da, ca), (db, cb)), ((db, cb), (da, ca))):
            out = list(d1[:-1]) + [x for x in d2 if x != k]
            if len(d1) > 2 and len(d2) == 2 and d1[-1] == k and out == free:
                return f"{c1} @ {c2}" if d2[0] == k else f"{c1} @ {c2}.T"
        if len(da) != len(db) or len(da) not in (2, 3):
            return None
        if len(da) == 3 and not (da[0] == db[0] == free[0] and len(free) == 3):
            return None
        if len(da) == 2 and len(free) != 2:
            return None
        rows = free[-2]
        if rows in da:
            (dl, cl), (dr, cr) = (da, ca), (db, cb)
        else:
            (dl, cl), (dr, cr) = (db, cb), (da, ca)
        if dl[-1] != k:
            cl = f"{cl}.mT" if len(dl) == 3 else f"{cl}.T"
        if dr[-2] != k:
            cr = f"{cr}.mT" if len(dr) == 3 else f"{cr}.T"
        return f"{cl} @ {cr}"

    def _onehot_contraction(self, y, other, axes, coeff):
        do = self.dims(other)
        if 1 in do:
            return None  # a kept size-one dim: the dense contraction below lines it up
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
            self.sizes_used |= {a.name for a in (c,) + tuple(rest)}
            shape = ", ".join(a.name for a in (c,) + tuple(rest)) + ("," if not rest else "")
            flat = ", ".join(["-1"] + [a.name for a in rest])
            body = self._print(other)
            if not other.is_Symbol:
                body = f"({body})"
            code = (f"{body}.new_zeros(({shape})).index_add_(0, {name}.reshape(-1), "
                    f"{body}.reshape({flat}))")
            return self._scaled(coeff, code), (c,) + tuple(rest)
        if axes == [c] and c in do and not set(y.index_dims) & set(do):  # a column lookup: W[:, X]
            pos = do.index(c)
            code = f"{self._operand(other)}[{':, ' * pos}{name}]"
            got = tuple(do[:pos]) + tuple(y.index_dims) + tuple(do[pos + 1:])
            order = sorted(range(len(got)), key=lambda i: self.spec.axis_list.index(got[i]))
            if order != list(range(len(got))):  # back to the spec's axis order, as a view
                code += ".T" if len(got) == 2 else f".permute{tuple(order)}"
            return self._scaled(coeff, code), tuple(got[i] for i in order)
        return None  # falls back to a dense one_hot times ``other``, still vectorised

    def _scaled(self, coeff, code):
        if coeff == 1:
            return code
        if coeff == -1:
            return f"-{code}"
        return f"{self.parenthesize(coeff, PRECEDENCE['Mul'])}*({code})"
