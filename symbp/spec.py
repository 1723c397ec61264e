"""The spec language: a layer's forward pass as named SymPy bindings over axes.

A spec describes one element of every tensor. Each tensor is a SymPy
``Symbol`` standing for "the element at the current index"; which axes that
index runs over is recorded in the spec (its *dims*). Broadcasting is
implicit: in ``x - bnmeani`` the feature-only ``bnmeani`` is reused for every
batch row. Reductions are explicit and opaque to SymPy, so that the engine
(not SymPy's summation code) decides what to do with them::

    spec  = Spec("batchnorm", "BatchNorm1d, training mode")
    n, d  = spec.axes("n d")             # an axis is also its size
    x     = spec.input("hprebn", (n, d))
    gain  = spec.param("bngain", (1, d))  # 1 = a kept, size-one dim
    eps   = spec.option("eps", 1e-5)      # a runtime scalar, stays symbolic
    mean  = spec.let("bnmeani", Sum(n, x) / n)
    ...
    spec.output("hpreact", gain * bnraw + bias)
    spec.save(bnraw, bnvar_inv, gain)     # what the fused backward may read

Building blocks:

* ``axes("n d")``: axes. The symbol ``n`` is both the axis and its size.
* ``input`` / ``param``: differentiable tensors with declared dims, in the
  order the generated ``forward`` takes them. Dims list axes in storage
  order; ``1`` is a kept size-one dim (``(1, d)`` is the seeds' ``(1, 200)``).
* ``data(name, dims)``: a real-valued tensor that is not differentiated
  (targets, masks, weights): no gradient is derived, computed or returned.
* ``classes(name, index_dims, axis)``: integer data (class targets,
  embedding indices). In formulas the symbol is its one-hot encoding along
  ``axis``; it is never differentiated, and contracting with it lowers to
  indexing wherever a lookup fits.
* ``option(name, default)``: a positive runtime scalar such as ``eps``.
* ``let(name, expr)``: an intermediate. Its dims are inferred (the operand
  with the same axes, or the reduced operand with the axis kept as size one);
  pass ``dims=`` where inference cannot know, e.g. after a contraction.
  ``nonnegative=True`` / ``positive=True`` state facts SymPy cannot infer.
* ``output(name, expr)``: the last binding; its gradient is the input.
* ``save(...)``: tensors the fused backward is written in terms of.
* ``Sum(axis, expr)`` and ``Max(axis, expr)`` (``symbp.reductions``, importable
  from here): reductions along one axis.
  A mean is ``Sum(n, e) / n``; a contraction is ``Sum(k, a * b)`` where ``a``
  and ``b`` share the axis ``k``.

Elementwise functions are SymPy's own plus ``symbp.functions`` (``sigmoid``,
``softplus``, ``relu``, ``leaky_relu``); see that module for the derivative
each takes at a kink.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass, field

import sympy as sp

from symbp.errors import SpecError
from symbp.functions import SUPPORTED, SUPPORTED_NAMES, canonical
from symbp.reductions import ArgmaxMask, Max, Reduction, Sum

#: what a layer file imports from here (the reductions and the error live in their own modules)
__all__ = ["ArgmaxMask", "Max", "Reduction", "Spec", "SpecError", "Sum", "axis_divisors"]

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


#: names the generated module itself uses; a tensor, option or axis may not take them
RESERVED = frozenset({"torch", "forward", "backward", "backward_chunked", "Function", "chunked", "needs",
                      "ValueError", "self", "None", "True", "False"})


def check_identifier(name: str, what: str) -> str:
    """Names reach generated Python source, so only plain identifiers pass."""
    if not isinstance(name, str) or not _IDENT.match(name) or keyword.iskeyword(name):
        raise SpecError(f"{what} {name!r} is not a plain Python identifier")
    return name


def check_spec_name(name: str, what: str) -> str:
    """A tensor, option or axis name: an identifier that cannot collide with generated code.

    Generated internals start with an underscore or are in ``RESERVED``, so
    refusing those here (at derive time) means no spec can break ``generate``.
    """
    check_identifier(name, what)
    if name.startswith("_"):
        raise SpecError(f"{what} {name!r}: names starting with '_' are reserved for generated code")
    if name in RESERVED:
        reserved = ", ".join(sorted(RESERVED))
        raise SpecError(f"{what} {name!r} is reserved in generated code (reserved: {reserved})")
    return name


class Name(sp.Symbol):
    """A tensor's (or gradient's, or option's) symbol: typeset upright as one word in Jupyter,
    ``\\mathrm{bnvar\\_inv}`` rather than ``bnvar_{inv}`` beside ``bngain`` run together."""

    def _latex(self, printer):
        names = printer._settings.get("symbol_names") or {}
        if self in names:  # a printer that names symbols itself (symbp's reports) decides
            return names[self]
        if len(self.name) == 1:
            return self.name
        return r"\mathrm{%s}" % self.name.replace("_", r"\_")


@dataclass
class Tensor:
    """One named tensor of a spec: its symbol, dims and role."""

    name: str
    symbol: sp.Symbol
    dims: tuple
    role: str  # "input", "param", "data", "classes", "let", "output"
    expr: sp.Expr | None = None
    index_dims: tuple = ()  # for "classes": dims of the integer index tensor
    class_axis: sp.Symbol | None = None

    @property
    def axes(self) -> frozenset:
        return frozenset(a for a in self.dims if a != 1)

    @property
    def differentiable(self) -> bool:
        return self.role in ("input", "param")


@dataclass
class Option:
    """A runtime scalar option (such as ``eps``): symbolic in the math."""

    name: str
    symbol: sp.Symbol
    default: float


@dataclass
class Spec:
    """A layer's forward pass: axes, tensors, options and bindings in order."""

    name: str
    description: str
    axis_list: list = field(default_factory=list)
    tensors: dict = field(default_factory=dict)  # name -> Tensor, in order
    options: dict = field(default_factory=dict)  # name -> Option
    saved: list = field(default_factory=list)
    settings: dict = field(default_factory=dict)  # structural options chosen

    def __post_init__(self):
        check_identifier(self.name, "layer name")
        self._by_symbol: dict = {}
        self._adjoints: dict = {}

    # -- declarations -----------------------------------------------------
    def axes(self, names: str):
        out = []
        for nm in names.split():
            check_spec_name(nm, "axis")
            self._check_new(nm)
            a = sp.Symbol(nm, integer=True, positive=True)
            self.axis_list.append(a)
            out.append(a)
        return out[0] if len(out) == 1 else tuple(out)

    def input(self, name, dims, **assume):
        return self._add(name, dims, "input", **assume)

    def param(self, name, dims, **assume):
        return self._add(name, dims, "param", **assume)

    def data(self, name, dims, **assume):
        """A real-valued tensor that is never differentiated: targets, masks, per-example weights."""
        return self._add(name, dims, "data", **assume)

    def classes(self, name, index_dims, axis):
        """Integer class indices with ``index_dims``; the symbol is their one-hot along ``axis``."""
        self._check_axes(name, index_dims)
        self._check_axes(name, (axis,))
        t = self._add(name, tuple(index_dims) + (axis,), "classes", nonnegative=True)
        rec = self.tensors[name]
        rec.index_dims, rec.class_axis = tuple(index_dims), axis
        return t

    def option(self, name, default):
        check_spec_name(name, "option")
        self._check_new(name)
        if not float(default) > 0:
            raise SpecError(f"option {name}: default must be positive")
        sym = Name(name, positive=True)
        self.options[name] = Option(name, sym, float(default))
        return sym

    def let(self, name, expr, dims=None, **assume):
        return self._bind(name, expr, dims, "let", assume)

    def output(self, name, expr, dims=None, **assume):
        if self.output_tensor is not None:
            raise SpecError(f"binding {name!r}: the spec already has an output")
        return self._bind(name, expr, dims, "output", assume)

    def adjoint(self, name: str) -> sp.Symbol:
        """The symbol of ``d<name>``: same dims as ``name``, never a binding."""
        gname = "d" + name
        if gname in self._adjoints:
            return self._adjoints[gname]
        t = self.tensors[name]
        sym = Name(gname, real=True)
        self._adjoints[gname] = sym
        self._by_symbol[sym] = Tensor(gname, sym, t.dims, "adjoint")
        return sym

    def save(self, *symbols):
        for s in symbols:
            self.saved.append(self.tensor_of(s).name)

    # -- queries ----------------------------------------------------------
    @property
    def output_tensor(self) -> Tensor | None:
        for t in self.tensors.values():
            if t.role == "output":
                return t
        return None

    @property
    def bindings(self) -> list:
        return [t for t in self.tensors.values() if t.role in ("let", "output")]

    @property
    def differentiable(self) -> list:
        return [t for t in self.tensors.values() if t.differentiable]

    @property
    def arguments(self) -> list:
        """What the generated forward takes, in declaration order."""
        return [t for t in self.tensors.values() if t.role in ("input", "param", "data", "classes")]

    def tensor_of(self, sym) -> Tensor:
        try:
            return self._by_symbol[sym]
        except (KeyError, TypeError):
            raise SpecError(f"{sym} is not a tensor of spec {self.name!r}") from None

    def is_tensor(self, sym) -> bool:
        return sym in self._by_symbol

    def axes_of(self, expr) -> frozenset:
        """The axes an element expression varies along (reduced axes excluded)."""
        if expr in self._by_symbol:
            return self._by_symbol[expr].axes
        if isinstance(expr, Reduction) and not isinstance(expr, ArgmaxMask):
            return self.axes_of(expr.body) - {expr.axis}
        out = frozenset()
        for a in expr.args:
            out |= self.axes_of(a)
        return out

    def axis_position(self, axis) -> int:
        return self.axis_list.index(axis)

    def memo(self, kind: str) -> dict:
        """A cache for a pure function of this spec and an expression (the engine repeats them many
        times); emptied when a declaration is added, since the results depend on the declarations."""
        version = (len(self._by_symbol), len(self.axis_list), len(self.options), len(self.saved))
        store = self.__dict__.setdefault("_memo", {})
        if store.get(None) != version:
            store.clear()
            store[None] = version
        return store.setdefault(kind, {})

    # -- internals --------------------------------------------------------
    def _check_new(self, name):
        if name in self.tensors or name in self.options or any(a.name == name for a in self.axis_list):
            raise SpecError(f"binding {name!r}: name is already defined")

    def _check_axes(self, name, dims):
        for a in dims:
            if a != 1 and a not in self.axis_list:
                raise SpecError(f"binding {name!r}: dim {a} is not a declared axis")

    def _add(self, name, dims, role, **assume):
        check_spec_name(name, "tensor")
        self._check_new(name)
        dims = tuple(dims)
        self._check_axes(name, dims)
        sym = Name(name, real=True, **assume)
        self.tensors[name] = Tensor(name, sym, dims, role)
        self._by_symbol[sym] = self.tensors[name]
        return sym

    def _bind(self, name, expr, dims, role, assume):
        check_spec_name(name, "binding")
        self._check_new(name)
        expr = canonical(expr)
        self._validate_expr(name, expr)
        if dims is None:
            dims = self._infer_dims(name, expr)
        dims = tuple(dims)
        self._check_axes(name, dims)
        got = frozenset(a for a in dims if a != 1)
        if got != self.axes_of(expr):
            raise SpecError(f"binding {name!r}: dims {dims} do not match its axes "
                            f"{sorted(map(str, self.axes_of(expr)))}")
        if not assume:
            if expr.is_positive:
                assume = {"positive": True}
            elif expr.is_nonnegative:
                assume = {"nonnegative": True}
        sym = Name(name, real=True, **assume)
        self.tensors[name] = Tensor(name, sym, dims, role, expr=expr)
        self._by_symbol[sym] = self.tensors[name]
        return sym

    def _validate_expr(self, name, expr):
        allowed = SUPPORTED + (Sum, Max)
        for node in sp.preorder_traversal(expr):
            if isinstance(node, Reduction):
                if node.axis not in self.axis_list:
                    raise SpecError(f"binding {name!r}: reduction over undeclared axis {node.axis}")
                if node.axis not in self.axes_of(node.body):
                    raise SpecError(f"binding {name!r}: {node} reduces over {node.axis}, "
                                    f"which its operand does not have")
            elif isinstance(node, sp.Function) and not isinstance(node, allowed):
                raise SpecError(f"binding {name!r}: unsupported function {node.func.__name__} "
                                f"(supported: {SUPPORTED_NAMES})")
            elif isinstance(node, sp.Pow) and not node.exp.is_number:
                if self.axes_of(node.exp) or node.exp.free_symbols & set(self._by_symbol):
                    raise SpecError(f"binding {name!r}: tensor-valued exponents are not supported")
        known = set(self._by_symbol) | set(self.axis_list) | {o.symbol for o in self.options.values()}
        for s in expr.free_symbols:
            if s not in known:
                raise SpecError(f"binding {name!r}: {s} is used before it is defined")

    def _infer_dims(self, name, expr):
        want = self.axes_of(expr)
        if not want:
            return ()
        # an operand with exactly these axes gives its layout
        cands = [self._by_symbol[s] for s in sp.preorder_traversal(expr) if s in self._by_symbol]
        for t in cands:
            if t.axes == want and t.role != "classes":
                return t.dims
        # a reduction: the reduced operand's layout with the axis kept as size one
        red = _top_reduction(expr)
        if red is not None:
            inner = self._infer_dims(name, red.body) if not red.body.is_Symbol else \
                self._by_symbol[red.body].dims
            kept = tuple(1 if a == red.axis else a for a in inner)
            if frozenset(a for a in kept if a != 1) == want:
                return kept
        raise SpecError(f"binding {name!r}: cannot infer its dims; pass dims=(...)")


def axis_divisors(spec) -> list:
    """Expressions of axis sizes that the bindings divide by, such as Bessel's ``n - 1``."""
    axes = set(spec.axis_list)
    found = []
    for t in spec.bindings:
        for node in sp.preorder_traversal(t.expr):
            base = node.base if isinstance(node, sp.Pow) and node.exp.is_negative else None
            if base is not None and base.free_symbols and base.free_symbols <= axes \
                    and not base.is_Symbol and base not in found:
                found.append(base)
    return found


def _top_reduction(expr):
    """The reduction in ``k * R(axis, e)`` (k free of it), or None."""
    if isinstance(expr, Reduction):
        return expr
    if isinstance(expr, sp.Mul):
        reds = [a for a in expr.args if isinstance(a, Reduction)]
        if len(reds) == 1:
            return reds[0]
    if isinstance(expr, sp.Pow):
        return _top_reduction(expr.base)
    return None
