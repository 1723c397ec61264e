"""The simplifier's work one rewrite at a time: identities, vanishing paths, chunked to fused.

The engine's ``simplify.closed_form`` records every step it takes (``engine.trace``): the
expression after each rewrite and the rule behind it. The chains here print those records
with the reason each ``=`` holds, so the last line of each chain is the engine's result; they
never simplify anything themselves. Only an identity is shown being derived here, one
definition at a time.
"""

from __future__ import annotations

import sympy as sp

from symbp.engine.algebra import normalize
from symbp.spec import Sum
from symbp.teach.lesson import Step, ticked

# -- identities --------------------------------------------------------------------------------


def identity_chain(spec, lhs, rhs, defnum) -> list:
    """``Σ_n(bndiff) = Σ_n(hprebn - bnmeani) = Σ_n(hprebn) - n*bnmeani = 0``, one definition at a time."""
    defs = {t.symbol: t for t in spec.bindings}
    fold = {t.expr: t.symbol for t in spec.bindings}
    chain, expr, seen = [], lhs, {lhs}
    for _ in range(12):
        present = [s for s in expr.free_symbols if s in defs]
        if not present:
            break
        latest = max(present, key=lambda s: defnum[defs[s].name])
        new = expr.xreplace({latest: defs[latest].expr})
        chain.append(Step(new, f"by ({defnum[defs[latest].name]})"))
        expr = new
        norm = normalize(spec, expr)
        if norm != expr:
            chain.append(Step(norm, "linearity of the sum"))
            expr = norm
        folded = expr.xreplace({k: v for k, v in fold.items() if v != latest})
        if folded != expr and folded not in seen:
            used = [defnum[v.name] for k, v in fold.items() if expr.has(k) and v != latest]
            chain.append(Step(folded, "by " + ", ".join(f"({n})" for n in used) + ", read right to left"))
            expr = folded
        if expr in seen:
            break
        seen.add(expr)
    if sp.simplify(expr - rhs) != 0 or not chain:
        chain.append(Step(rhs, "every definition substituted down to the inputs"))
    elif chain[-1].expr != rhs:
        chain.append(Step(rhs, "simplify"))
    return chain


def identity_note(spec, lhs) -> str:
    body = lhs.body if isinstance(lhs, Sum) else lhs
    names = sorted({spec.tensor_of(s).name for s in body.free_symbols if spec.is_tensor(s)})
    return f"Why: the definitions make {ticked(names)} summed along `{lhs.axis}` free of every tensor."


# -- paths -------------------------------------------------------------------------------------


def paths(spec, ch) -> list:
    """Every path from the output to a tensor as (names from the output, value in d<output>)."""
    consumers = {}
    for n in ch.order:
        for c in ch.contributions[n]:
            consumers.setdefault(c.via, []).append(c)
    out = spec.output_tensor.name
    found = []

    def walk(node, value, path):
        for c in consumers.get(node, []):
            v = c.expr if value is None else c.expr.xreplace({spec.adjoint(node): value})
            found.append((path + [c.target], v))
            if len(found) < 200:
                walk(c.target, v, path + [c.target])

    walk(out, None, [out])
    return found


def zero_paths(spec, fused, all_paths, idmap) -> list:
    """``(path, value)`` for each path that is zero where the path one step shorter is not
    (so each is reported once), from the engine's closed forms of the path values; ``idmap``
    collects the identities those closed forms found, in the order found."""
    values = {tuple(p): v for p, v in all_paths}

    def zero(key):
        trace, _ = fused.untidied(spec, values[key])  # tidying finds no identities
        for k, v in trace.found.items():
            idmap.setdefault(k, v)
        return fused.vanishes(spec, values[key])

    out = []
    for path, value in all_paths:
        prefix = tuple(path[:-1])
        if zero(tuple(path)) and (prefix not in values or not zero(prefix)):
            out.append((path, value))
    return out


def zero_reason(chain) -> str:
    used = [s.reason for s in chain if s.reason.startswith("by the identit")]
    if used:
        return "It is zero " + used[0] + "."
    return "Its terms cancel."


# -- from chunked to fused ---------------------------------------------------------------------


def closed_form_chain(spec, ch, fused, name, stepnum, idnum, defnum) -> list:
    """From the chunked step of ``d<name>`` to its fused form, as the engine rewrote it."""
    start = ch.gradient(name)
    chain = [Step(start, f"the chunked step ({stepnum[name]})")]
    trace = fused.traces[name]
    if trace.start != start:
        used = sorted({stepnum[n] for n in _chain_names(ch, name)} - {stepnum[name]})
        chain.append(Step(trace.start, "inline " + ", ".join(f"({k})" for k in used)
                          + f": each gradient replaced by its own step, down to "
                            f"`{spec.adjoint(spec.output_tensor.name)}`"))
    chain += trace_steps(spec, trace, idnum, defnum)
    return chain


def _chain_names(ch, name) -> set:
    seen, todo = set(), [name]
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        todo += [c.via for c in ch.contributions.get(n, []) if c.via in ch.contributions]
    return seen


def trace_steps(spec, trace, idnum, defnum) -> list:
    """The engine's recorded rewrites (``simplify.closed_form``), each with the reason it holds:
    linearity, an identity, writing it in the saved tensors, tidying."""
    steps = []
    for r in trace.steps:
        if r.rule == "identity":
            reason = "by the identit" + ("ies " if len(r.uses) > 1 else "y ") + ", ".join(
                _id_ref(k, idnum) for k in r.uses)
        elif r.rule == "saved":
            reason = _rewrite_reason(spec, r.uses, defnum)
        else:
            reason = REASONS[r.rule]
        steps.append(Step(r.expr, reason))
    return steps


REASONS = {"linearity": "linearity: constants come out of each sum",
           "tidy": "gather the common factor (or expand, whichever takes fewer operations)"}


def _id_ref(k, idnum) -> str:
    if idnum and k in idnum:
        return f"({idnum[k]})"
    return f"`{k}`"


def _rewrite_reason(spec, fired, defnum) -> str:
    def cite(name):
        return f" ({defnum[name]})" if defnum and name in defnum else ""

    solved, substituted, recognised = [], [], []
    for s, value in fired:
        if not spec.is_tensor(s):  # a subexpression equal to a saved tensor
            owner = next((n for n in spec.saved if value.has(spec.tensors[n].symbol)), None)
            recognised.append(f"`{s}` as `{value}`" + (cite(owner) if owner else ""))
            continue
        t = spec.tensor_of(s)
        owner = next((n for n in spec.saved if spec.tensors[n].expr is not None
                      and s in spec.tensors[n].expr.free_symbols), None)
        if owner is not None and t.name not in spec.saved and value != t.expr:
            solved.append(f"`{t.name}` from `{owner}`{cite(owner)}")
        else:
            substituted.append(f"`{t.name}`{cite(t.name)}")
    words = []
    if solved:
        words.append("solve the saved bindings for " + ", ".join(solved))
    if substituted:
        words.append("substitute the definition of " + ", ".join(substituted))
    if recognised:
        words.append("recognise " + ", ".join(recognised))
    return "write it in the saved tensors: " + "; ".join(words)
