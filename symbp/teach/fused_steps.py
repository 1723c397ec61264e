"""The simplifier's work one rewrite at a time: identities, vanishing paths, chunked to fused.

The engine's ``simplify.closed_form`` only keeps its result; a learner needs every ``=`` on
the way and the reason it holds. The chains here re-run the engine's own steps
(``algebra.normalize``, ``simplify.apply_identities``, the rewrites into saved tensors,
``simplify.tidy``) in the same order and record what each one changed, so the last line of
each chain is the engine's result.
"""

from __future__ import annotations

import sympy as sp

from symbp.engine.algebra import normalize
from symbp.engine.simplify import apply_identities, rewrite, tidy
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


def first_zero(spec, path, all_paths, rewrites, idmap) -> bool:
    """The path is zero and the path one step shorter is not (so it is reported once)."""
    values = {tuple(p): v for p, v in all_paths}
    if _closed(spec, values[tuple(path)], rewrites, idmap) != 0:
        return False
    prefix = tuple(path[:-1])
    return prefix not in values or _closed(spec, values[prefix], rewrites, idmap) != 0


def _closed(spec, expr, rewrites, idmap):
    steps = simplify_steps(spec, expr, rewrites, idmap, {}, {})
    return steps[-1].expr if steps else expr


def zero_reason(chain) -> str:
    used = [s.reason for s in chain if s.reason.startswith("by the identit")]
    if used:
        return "It is zero " + used[0] + "."
    return "Its terms cancel."


# -- from chunked to fused ---------------------------------------------------------------------


def closed_form_chain(spec, ch, inliner, name, rewrites, idmap, stepnum, idnum, defnum) -> list:
    """From the chunked step of ``d<name>`` to its fused form; ``idmap`` collects the identities."""
    start = ch.gradient(name)
    chain = [Step(start, f"the chunked step ({stepnum[name]})")]
    full = inliner.full(start)
    if full != start:
        used = sorted({stepnum[n] for n in _chain_names(ch, name)} - {stepnum[name]})
        chain.append(Step(full, "inline " + ", ".join(f"({k})" for k in used)
                          + f": each gradient replaced by its own step, down to "
                            f"`{spec.adjoint(spec.output_tensor.name)}`"))
    chain += simplify_steps(spec, full, rewrites, idmap, idnum, defnum)
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


def simplify_steps(spec, expr, rewrites, idmap, idnum, defnum) -> list:
    """``simplify.closed_form`` step by step: linearity, identities, saved tensors, tidy.

    The engine holds some reductions as opaque symbols while it rewrites (``rewrites.thaw``);
    each step is shown with them written out, and a step that only holds one shows nothing.
    """
    thaw = getattr(rewrites, "thaw", None) or {}
    steps = []

    def add(new, reason):
        shown = new.xreplace(thaw) if thaw else new
        if shown != (steps[-1].expr if steps else expr.xreplace(thaw)):
            steps.append(Step(shown, reason))

    for _ in range(12):
        prev = expr
        norm = normalize(spec, expr)
        if norm != expr:
            add(norm, "linearity: constants come out of each sum")
            expr = norm
        before = dict(idmap)
        ided = apply_identities(spec, expr, idmap)
        if ided != expr:
            used = [k for k in idmap if expr.has(k)] or [k for k in idmap if k not in before]
            add(ided, "by the identit" + ("ies " if len(used) > 1 else "y ")
                + ", ".join(_id_ref(k, idnum) for k in used))
            expr = ided
        fired = [s for s in rewrites if expr.has(s)]
        rew = rewrite(expr, rewrites)
        if rew != expr:
            add(rew, _rewrite_reason(spec, fired, rewrites, defnum))
            expr = rew
        if expr == prev:
            break
    expr = expr.xreplace(thaw) if thaw else expr
    add(tidy(spec, expr), "gather the common factor (or expand, whichever takes fewer operations)")
    return steps


def _id_ref(k, idnum) -> str:
    if idnum and k in idnum:
        return f"({idnum[k]})"
    return f"`{k}`"


def _rewrite_reason(spec, fired, rewrites, defnum) -> str:
    def cite(name):
        return f" ({defnum[name]})" if defnum and name in defnum else ""

    solved, substituted, recognised = [], [], []
    for s in fired:
        if rewrites[s] in getattr(rewrites, "thaw", {}):
            continue  # a reduction held whole: the chain shows it written out
        if not spec.is_tensor(s):  # a subexpression equal to a saved tensor
            owner = next((n for n in spec.saved if rewrites[s].has(spec.tensors[n].symbol)), None)
            recognised.append(f"`{s}` as `{rewrites[s]}`" + (cite(owner) if owner else ""))
            continue
        t = spec.tensor_of(s)
        owner = next((n for n in spec.saved if spec.tensors[n].expr is not None
                      and s in spec.tensors[n].expr.free_symbols), None)
        if owner is not None and t.name not in spec.saved and rewrites[s] != t.expr:
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
