"""A symbolic proof that each fused closed form equals the chunked chain it came from.

Both sides are taken down to the inputs: the chunked chain with every adjoint
inlined, the fused form with every saved tensor replaced by its definition.
Their difference is expanded, made linear in every ``Sum`` and cleared of the
sums the definitions fix (``Sum(n, bndiff) = 0``, ``Sum(c, probs) = 1``),
until it is exactly zero or stops changing. The batch size and every other
axis stay symbolic, so the proof holds for all shapes, not sampled ones.
"""

from __future__ import annotations

import sympy as sp

from symbp.algebra import normalize
from symbp.simplify import Inliner, apply_identities, inline_forward, merge_sums
from symbp.spec import Sum


def residual(spec, chain, fused, rounds: int = 6) -> sp.Expr:
    """``chain - fused`` reduced as far as the bindings allow (0 means proven).

    Two passes: one keeps powers and exponentials whole (so equal reductions
    under a square root stay equal), one expands them fully (so
    ``exp(a - m)`` splits into factors linearity can pull out).
    """
    start = inline_forward(spec, chain - fused)
    best = None
    for expand in (_products, sp.expand):
        diff = start
        for _ in range(rounds):
            prev = diff
            diff = apply_identities(spec, normalize(spec, expand(diff)), {})
            if diff == 0 or diff == prev:
                break
        diff = sp.expand(diff)
        if diff == 0:
            return diff
        if diff.has(sp.Pow):  # rational functions (a sigmoid against its own derivative): clear them
            diff = _cancel_within_sums(merge_sums(spec, diff))
            if diff == 0:
                return diff
        best = diff if best is None else best
    return best


def _cancel_within_sums(expr):
    """Put every reduction body, innermost first, and then the whole over one cancelled fraction."""
    def visit(e):
        if e.is_Atom:
            return e
        e = e.func(*[visit(a) for a in e.args])
        return Sum(e.axis, sp.cancel(sp.together(e.body))) if isinstance(e, Sum) else e

    return sp.cancel(sp.together(visit(expr)))


def _products(expr):
    return sp.expand(expr, power_exp=False, power_base=False, log=False, multinomial=False)


def prove(derivation) -> dict:
    """``{'dname': True/False}``: fused form proven equal to the chunked chain."""
    d = derivation
    inliner = Inliner(d.chunked)
    out = {}
    for name, fused in d.fused.gradients.items():
        chain = inliner.full(d.chunked.gradient(name))
        out["d" + name] = residual(d.spec, chain, fused) == 0
    return out
