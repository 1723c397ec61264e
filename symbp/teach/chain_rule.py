"""Each chunked backward step written as the chain rule, with its local partials and why.

A step reads ``dx = Σ(∂y/∂x · dy) + ...`` (one term per use of ``x``), then the local
partials filled in, then the engine's own gradient where linearity or simplification changed
the look. The partials and the terms are the ones the engine recorded as it differentiated
(``reverse.Contribution``): nothing here differentiates again.
"""

from __future__ import annotations

import sympy as sp

from symbp.printing import shape_text
from symbp.spec import ArgmaxMask, Max, Reduction, Sum
from symbp.teach.lesson import Equation, Partial, Step, Terms, add_terms, ticked


def chain_rule_step(spec, ch, name, defnum) -> Equation:
    """The (unnumbered) equation of ``d<name>``; ``defnum`` numbers the forward bindings."""
    t = spec.tensors[name]
    adj = spec.adjoint(name)
    symbolic, local, notes, partials = [], [], [], []
    contribs = ch.contributions[name]
    for c in contribs:
        y = spec.tensors[c.via]
        dy = spec.adjoint(c.via)
        missing = sorted(y.axes - t.axes, key=spec.axis_position)
        term = sp.Mul(Partial(y.symbol, t.symbol), dy, evaluate=False)
        for a in reversed(missing):
            term = Sum(a, term)
        symbolic.append(term)
        local.append(c.raw)
        value = _partial_through(contribs, c.via)
        if value is not None:
            partials.append((Partial(y.symbol, t.symbol), value))
        notes.append(_step_note(spec, t, y, missing, defnum))
    per_use = ", one term per use" if len(contribs) > 1 else ""
    chain = [Step(add_terms(symbolic), "the chain rule" + per_use)]
    shown = add_terms(local)
    engine = ch.gradient(name)
    chain.append(Step(shown, "the local partials of " + ", ".join(
        f"({defnum[c.via]})" for c in contribs)))
    if not isinstance(shown, Terms) and sp.srepr(shown) != sp.srepr(engine) or \
            isinstance(shown, Terms) and sp.Add(*shown) != engine:
        chain.append(Step(engine, "linearity: constants come out of each sum"
                          if any(t.has(Sum) for t in (shown if isinstance(shown, Terms) else [shown]))
                          else "simplify"))
    notes.append(f"`{adj}` has the shape of `{name}`: {shape_text(t.dims)}.")
    return Equation(0, adj, chain, shape_text(t.dims), notes, key=adj.name, partials=partials)


def _partial_through(contribs, via):
    """∂via/∂target for one element (every term through ``via`` together), or None where a
    reduction's gradient must first be summed over an axis (then only the chain line is shown)."""
    parts = [c.partial for c in contribs if c.via == via]
    return None if any(p is None for p in parts) else sp.Add(*parts)


def contracted(spec, red, t) -> bool:
    """``red`` sums ``t`` times another tensor along an axis they share (a matrix product)."""
    return isinstance(red, Sum) and any(
        spec.is_tensor(s) and s != t.symbol and red.axis in spec.tensor_of(s).axes
        for s in red.body.free_symbols)


def _step_note(spec, t, y, missing, defnum) -> str:
    k = defnum[y.name]
    words = [f"Through `{y.name}` ({k}):"]
    reds = [r for r in sp.preorder_traversal(y.expr) if isinstance(r, Reduction)
            and not isinstance(r, ArgmaxMask) and t.symbol in r.body.free_symbols]
    contractions = [r for r in reds if contracted(spec, r, t)]
    axes = ticked(missing)
    if contractions:
        r = contractions[0]
        others = ticked(sorted({spec.tensor_of(s).name for s in r.body.free_symbols
                                if spec.is_tensor(s) and s != t.symbol}))
        words.append(f"`{y.name}` multiplies `{t.name}` with {others} and "
                     f"sums along `{r.axis}` (a contraction, like a matrix product), so the local partial "
                     f"of an element of `{t.name}` is the matching element of {others}"
                     + (f"; each element of `{t.name}` is used for every index of {axes}, so its "
                        f"gradient sums the terms over {axes}." if missing else "."))
    elif missing:
        words.append(f"`{t.name}` has shape {shape_text(t.dims)} but `{y.name}` {shape_text(y.dims)} "
                     f"reuses it along {axes}; broadcast in the forward is a sum in the backward, "
                     f"so the terms are summed over {axes}.")
    for r in reds:
        if isinstance(r, Max):
            words.append(f"`{y.name}` takes the max of `{t.name}` along `{r.axis}`; only the "
                         "arg-max element receives the gradient, the others get 0.")
        elif r not in contractions and r.axis in t.axes and r.axis not in missing:
            words.append(f"`{y.name}` sums along `{r.axis}`; a sum in the forward is a broadcast in "
                         f"the backward: every element along `{r.axis}` gets the same gradient.")
    if len(words) == 1:
        words.append("an elementwise use, so the local partial multiplies element by element.")
    return " ".join(words)
