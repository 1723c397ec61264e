"""Elementwise functions of the spec language, and their derivative conventions at kinks.

SymPy's own ``exp``, ``log``, ``tanh``, ``sin``, ``cos``, ``erf``, ``Abs``,
``sign``, ``sqrt``, ``Heaviside`` and ``Piecewise`` work as they are. This
module adds what a layer author needs beyond them, each differentiated the
way torch differentiates the op it prints as:

* ``sigmoid(x)`` (printed ``torch.sigmoid``), ``softplus(x)`` (printed
  ``torch.nn.functional.softplus``, stable for large ``x``); written out as
  ``1/(1 + exp(-x))`` and ``log(1 + exp(x))`` they are recognised and
  turned into these (``canonical``);
* ``relu(x)`` = ``Max(0, x)``: derivative 0 at ``x = 0`` (as ``torch.relu``);
  ``Max(c, x)`` / ``Min(c, x)`` with a constant ``c`` follow the same rule
  (the constant wins a tie);
* ``leaky_relu(x, slope)``: slope at ``x = 0`` (as ``F.leaky_relu``);
* ``Max(a, b)`` / ``Min(a, b)`` of two tensors: the gradient is split
  evenly at a tie (as ``torch.maximum`` / ``torch.minimum``);
* ``Abs``: derivative ``sign(x)``, 0 at 0; ``sign`` and ``Heaviside``:
  derivative 0 (their delta at the jump is dropped, as torch does);
* ``Piecewise``: each branch differentiated on its own condition, so the
  branch that owns a boundary decides its derivative (Huber's ``|x| <= delta``).

``sympy.Max`` / ``sympy.Min`` here are the elementwise ones; the reduction
along an axis is ``symbp.spec.Max(axis, e)``.
"""

from __future__ import annotations

import sympy as sp


class sigmoid(sp.Function):  # noqa: N801 (a SymPy function, named as the math)
    """The logistic function ``1/(1 + exp(-x))``."""

    nargs = 1

    def fdiff(self, argindex=1):
        return self * (1 - self)

    def _eval_is_real(self):
        return self.args[0].is_real

    def _eval_is_positive(self):
        return self.args[0].is_real

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return 1 / (1 + sp.exp(-x))

    def _latex(self, printer, exp=None):
        tex = r"\sigma\left(%s\right)" % printer._print(self.args[0])
        return tex if exp is None else r"%s^{%s}" % (tex, exp)


class softplus(sp.Function):  # noqa: N801
    """``log(1 + exp(x))``, computed without overflow."""

    nargs = 1

    def fdiff(self, argindex=1):
        return sigmoid(self.args[0])

    def _eval_is_real(self):
        return self.args[0].is_real

    def _eval_is_positive(self):
        return self.args[0].is_real

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return sp.log(1 + sp.exp(x))

    def _latex(self, printer, exp=None):
        tex = r"\operatorname{softplus}\left(%s\right)" % printer._print(self.args[0])
        return tex if exp is None else r"%s^{%s}" % (tex, exp)


def relu(x):
    """``Max(0, x)``, derivative 0 at 0."""
    return sp.Max(0, x)


def leaky_relu(x, slope):
    """``x`` where positive, else ``slope*x``; derivative ``slope`` at 0."""
    return sp.Piecewise((x, x > 0), (slope * x, True))


#: the elementwise functions a spec may use (besides + - * / and powers)
SUPPORTED = (sp.exp, sp.log, sp.tanh, sp.sin, sp.cos, sp.erf, sp.Abs, sp.sign, sp.Heaviside,
             sp.Piecewise, sigmoid, softplus)
SUPPORTED_NAMES = "exp, log, tanh, sin, cos, erf, Abs, sign, sqrt, Heaviside, Piecewise, " \
                  "Max/Min (elementwise), relu, leaky_relu, sigmoid, softplus"


def canonical(expr):
    """Rewrite a forward expression into the functions above (meaning unchanged).

    ``1/(1 + exp(-u))`` -> ``sigmoid(u)``, ``log(1 + exp(u))`` -> ``softplus(u)``,
    elementwise ``Max``/``Min`` -> ``Piecewise`` with torch's tie rule.
    """
    def visit(e):
        if e.is_Atom:
            return e
        e = e.func(*[visit(a) for a in e.args]) if e.args else e
        if isinstance(e, sp.Pow) and e.exp == -1:
            u = _one_plus_exp(e.base)
            if u is not None:
                return sigmoid(-u)
        if isinstance(e, sp.log):
            u = _one_plus_exp(e.args[0])
            if u is not None:
                return softplus(u)
        if isinstance(e, (sp.Max, sp.Min)):
            return _minmax(e)
        return e

    return visit(sp.sympify(expr))


def _one_plus_exp(e):
    """``u`` when ``e`` is ``1 + exp(u)``, else None."""
    if isinstance(e, sp.Add) and len(e.args) == 2 and sp.S.One in e.args:
        other = e.args[0] if e.args[1] == 1 else e.args[1]
        if isinstance(other, sp.exp):
            return other.args[0]
    return None


def _minmax(e):
    """Elementwise ``Max``/``Min`` as ``Piecewise``: a constant wins ties, two tensors split them."""
    args = list(e.args)
    is_max = isinstance(e, sp.Max)
    while len(args) > 2:
        args = [_minmax(e.func(args[0], args[1], evaluate=False))] + args[2:]
    a, b = args
    better = (lambda p, q: p > q) if is_max else (lambda p, q: p < q)
    if not a.free_symbols or not b.free_symbols:  # Max(c, x): relu's rule, the constant wins a tie
        c, x = (a, b) if not a.free_symbols else (b, a)
        return sp.Piecewise((x, better(x, c)), (c, True))
    return sp.Piecewise((a, better(a, b)), (b, better(b, a)), ((a + b) / 2, True))


def drop_deltas(expr):
    """The derivative of a jump (``sign``, ``Heaviside``) is 0 away from it, and torch uses 0 at it too."""
    if expr.has(sp.DiracDelta):
        expr = expr.replace(lambda n: isinstance(n, sp.DiracDelta), lambda n: sp.S.Zero)
    return expr
