"""The teaching view of a derivation: why every line of it holds.

A :class:`Lesson` is what a learner reads, in order: the notation, the
forward bindings as numbered equations, every chunked backward step written
as the chain rule (local partial times incoming gradient, one term per path,
a sum where the forward broadcast), the identities the simplifier found and
why they hold, the paths that contribute nothing and why, the way from the
chunked chain to the fused closed form as a numbered chain of equalities,
and the fused result in a readable grouping. ``report`` prints it as text,
LaTeX and Markdown; the generated code cites its equation numbers.

Nothing here changes the math: every chain re-runs the engine's own steps
(``algebra.normalize``, ``simplify.apply_identities``, the rewrites into saved
tensors, ``simplify.tidy``) and records what each step did, and the last
expression of each chain is the engine's result.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from symbp.engine.algebra import normalize
from symbp.engine.reverse import local_form
from symbp.engine.simplify import Inliner, apply_identities, basis_rewrites, rewrite, tidy
from symbp.spec import ArgmaxMask, Max, Reduction, Sum


class Partial(sp.Function):
    """``Partial(y, x)``: the symbol ∂y/∂x in a chain-rule line (never evaluated)."""

    nargs = 2

    def _sympystr(self, printer):
        return "∂%s/∂%s" % (printer._print(self.args[0]), printer._print(self.args[1]))


@dataclass
class Step:
    """One ``= expr`` of a chain, with the reason it holds (names in backticks)."""

    expr: sp.Expr
    reason: str = ""


@dataclass
class Equation:
    """``lhs = chain[0] = chain[1] = ...``, numbered; ``notes`` explain it in words."""

    number: int
    lhs: sp.Expr
    chain: list
    shape: str = ""
    notes: list = field(default_factory=list)
    key: str = ""  # what it is about: a tensor name, 'dname' or an identity
    partials: list = field(default_factory=list)  # (Partial(y, x), value): the local partials used


@dataclass
class Section:
    key: str
    title: str
    intro: list
    equations: list


@dataclass
class Lesson:
    sections: list
    notation: list
    edges: list  # (source, consumer) forward edges, for the graph
    zero_edges: set  # (target, via) whose gradient contribution is zero
    vanishing: list  # (path as tensor names, Equation): paths that carry nothing

    def numbers(self, key: str) -> dict:
        """``{equation.key: number}`` of one section (``'forward'``, ``'backward'``, ``'result'``)."""
        for s in self.sections:
            if s.key == key:
                return {e.key: e.number for e in s.equations}
        return {}


def shape_of(dims) -> str:
    return "(" + ", ".join(str(a) for a in dims) + ("," if len(dims) == 1 else "") + ")" if dims else "()"


def _axes_words(axes) -> str:
    return ", ".join(f"`{a}`" for a in axes)


def build(d) -> Lesson:
    """The lesson of a :class:`~symbp.engine.derivation.Derivation`."""
    spec, ch = d.spec, d.chunked
    counter = iter(range(1, 10_000))
    out = spec.output_tensor
    defnum = {}

    forward = []
    for t in spec.bindings:
        eq = Equation(next(counter), t.symbol, [Step(t.expr)], shape_of(t.dims), key=t.name)
        defnum[t.name] = eq.number
        forward.append(eq)

    backward = []
    stepnum = {}
    for name in ch.order:
        eq = _chain_rule_step(spec, ch, name, defnum)
        eq.number = next(counter)
        stepnum[name] = eq.number
        backward.append(eq)

    rewrites = basis_rewrites(spec)
    inliner = Inliner(ch)
    paths = _paths(spec, ch)
    inputs = [t.name for t in spec.differentiable if t.name in ch.contributions]
    # a first pass finds every identity the engine uses, so that the chains can cite them by number
    idmap: dict = {}
    for name in inputs:
        _closed_form_chain(spec, ch, inliner, name, rewrites, idmap, stepnum, {}, defnum)
    zero_paths = [(p, v) for p, v in paths if _first_zero(spec, p, paths, rewrites, idmap)]
    zero_edges = {k for k, v in d.fused.path_values.items() if v == 0}

    identities, idnum = [], {}
    for lhs, rhs in idmap.items():
        eq = Equation(next(counter), lhs, _identity_chain(spec, lhs, rhs, defnum), key=str(lhs))
        eq.notes = [_identity_note(spec, lhs)]
        idnum[lhs] = eq.number
        identities.append(eq)

    vanishing = []
    for path, value in zero_paths:
        target = path[-1]
        chain = [Step(value, "the local partials multiplied along the path")]
        chain += _simplify_steps(spec, value, rewrites, {}, idnum, defnum)
        names = " → ".join(f"`{p}`" for p in path)
        eq = Equation(next(counter), Label(spec.adjoint(target), "this path"), chain,
                      key="path:" + ">".join(path))
        eq.notes = [f"The path {names} carries nothing to `{spec.adjoint(target)}`. {_zero_reason(chain)}"]
        vanishing.append((path, eq))
    edge_num = {}
    for target, via in sorted(zero_edges, key=lambda k: stepnum.get(k[0], 0)):
        c = next(c for c in ch.contributions[target] if c.via == via)
        chain = [Step(c.expr, f"the term through `{via}` in ({stepnum[target]})")]
        whole = [k for k in edge_num if k[0] == via]
        if whole and len(whole) == len(ch.contributions[via]):
            chain.append(Step(sp.S.Zero, f"`{spec.adjoint(via)}` = 0 by ({edge_num[whole[0]]})"))
            note = (f"Nothing reaches `{target}` through `{via}`, because the whole of "
                    f"`{spec.adjoint(via)}` is zero.")
        else:
            full = inliner.full(c.expr)
            if full != c.expr:
                chain.append(Step(full, f"inline the chunked steps down to `{spec.adjoint(out.name)}`"))
            chain += _simplify_steps(spec, full, rewrites, {}, idnum, defnum)
            many = [p for p, _ in paths if len(p) > 1 and p[-1] == target and p[-2] == via]
            cancel = len(many) > 1 and not any(p == z for z, _ in zero_paths for p in many)
            note = (f"Everything that reaches `{target}` through `{via}` adds up to zero"
                    + (f", although none of its {len(many)} paths is zero on its own: they cancel"
                       if cancel else "") + ". " + _zero_reason(chain))
        eq = Equation(next(counter), Label(spec.adjoint(target), f"through {via}"), chain,
                      key=f"edge:{target}<{via}", notes=[note])
        edge_num[(target, via)] = eq.number
        vanishing.append(([via, target], eq))

    fused_chains, already = [], []
    for name in inputs:
        chain = _closed_form_chain(spec, ch, inliner, name, rewrites, {}, stepnum, idnum, defnum)
        if len(chain) == 1:
            already.append(f"`{spec.adjoint(name)}` ({stepnum[name]})")
            continue
        fused_chains.append(Equation(next(counter), spec.adjoint(name), chain, key=grad_key(spec, name)))
    fused_intro = [
        "For each input: start from its chunked step, inline the chain down to "
        f"`{spec.adjoint(out.name)}`, pull constants out of the sums, apply the identities, "
        f"write everything in the saved tensors ({', '.join(f'`{s}`' for s in spec.saved)}) and "
        "gather the common factor. Every `=` is one of these rewrites."]
    if already:
        one = len(already) == 1
        fused_intro.append(("The chunked step of " if one else "The chunked steps of ") + ", ".join(already)
                           + (" is" if one else " are") + " already in closed form.")

    results = []
    for name, expr in d.fused.gradients.items():
        results.append(Equation(next(counter), spec.adjoint(name), [Step(expr)],
                                shape_of(spec.tensors[name].dims), key=grad_key(spec, name)))

    sections = [
        Section("forward", "Forward pass", [
            "The layer's bindings in order; each symbol stands for one element of its tensor, "
            "and its shape is on the right."], forward),
        Section("backward", "Backward pass, one step at a time", [
            f"From `{spec.adjoint(out.name)}` back to the inputs. Each step is the chain rule: "
            "the local partial of the binding that uses the tensor, times that binding's "
            "gradient (already known, because it comes earlier here). A tensor used by several "
            "bindings gets one term per use, added up."], backward),
        Section("identities", "Identities found from the bindings", [
            "Sums whose value follows from the definitions alone. They are what makes paths "
            "vanish in the fused form; nothing about the layer is assumed."], identities),
        Section("vanishing", "Paths that contribute nothing", [
            "A path from the output to a tensor whose contribution simplifies to exactly zero: "
            "the fused form does not need it."], [e for _, e in vanishing]),
        Section("fused", "From the chunked steps to the fused closed form", fused_intro, fused_chains),
        Section("result", "Fused closed form: what the generated backward() computes", [
            "One line per differentiable input, in a readable grouping; each is a line of the "
            "generated `backward()`."], results),
    ]
    notation = _notation(spec)
    edges = []
    for t in spec.bindings:
        for s in sorted(t.expr.free_symbols, key=str):
            if spec.is_tensor(s):
                edges.append((spec.tensor_of(s).name, t.name))
    return Lesson(sections, notation, edges, zero_edges, vanishing)


def grad_key(spec, name) -> str:
    return spec.adjoint(name).name


@dataclass(frozen=True)
class Label:
    """The left side of a partial gradient: ``adj`` restricted to a path or a consumer."""

    adj: sp.Symbol
    note: str


def _notation(spec) -> list:
    out = spec.output_tensor
    lines = [
        f"`dX` means ∂L/∂X, the gradient of the loss L with respect to `X`; it has the shape of "
        f"`X`. The incoming gradient `{spec.adjoint(out.name)}` = ∂L/∂{out.name} is given.",
        "A name stands for one element of its tensor. `Σ_k(...)` sums along axis `k` and keeps it "
        "as a size-one dim, so `Σ_n(x)` of an `(n, d)` tensor has shape `(1, d)`. A mean is "
        "`Σ_n(...)/n`.",
        f"Axes: {_axes_words(spec.axis_list)}; each axis name is also its size. In a shape, `1` is a "
        "kept size-one dim, and such a tensor is reused (broadcast) along that axis.",
    ]
    if any(isinstance(n, Max) for t in spec.bindings for n in sp.preorder_traversal(t.expr)):
        lines.append("`1[x = max_k x]` is 1 where `x` is largest along `k` and 0 elsewhere: only the "
                     "arg-max gets the gradient of a max.")
    lines.append("Equations are numbered; each line of the generated code ends with the number of "
                 "the equation it implements, such as `# (9)`.")
    return lines


# -- the chain rule, one tensor at a time ------------------------------------------------------


def _chain_rule_step(spec, ch, name, defnum) -> Equation:
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
        local.append(_local_term(spec, y.expr, dy, t))
        value = _elementwise_partial(spec, y.expr, t)
        if value is not None:
            partials.append((Partial(y.symbol, t.symbol), value))
        notes.append(_step_note(spec, t, y, missing, defnum))
    chain = [Step(_add(symbolic), "the chain rule" + (", one term per use" if len(contribs) > 1 else ""))]
    shown = _add(local)
    engine = ch.gradient(name)
    if sp.expand(normalize(spec, sp.Add(*local)) - normalize(spec, engine)) != 0:
        # a use this view cannot split into partials: show the engine's terms, never a wrong line
        shown, partials[:] = _add([c.expr for c in contribs]), []
    chain.append(Step(shown, "the local partials of " + ", ".join(
        f"({defnum[c.via]})" for c in contribs)))
    if not isinstance(shown, Terms) and sp.srepr(shown) != sp.srepr(engine) or \
            isinstance(shown, Terms) and sp.Add(*shown) != engine:
        chain.append(Step(engine, "linearity: constants come out of each sum"
                          if any(t.has(Sum) for t in (shown if isinstance(shown, Terms) else [shown]))
                          else "simplify"))
    notes.append(f"`{adj}` has the shape of `{name}`: {shape_of(t.dims)}.")
    return Equation(0, adj, chain, shape_of(t.dims), notes, key=adj.name, partials=partials)


class Terms(tuple):
    """A sum printed in the order given (one term per path), not SymPy's order."""


def _add(terms):
    return terms[0] if len(terms) == 1 else Terms(terms)


def _local_term(spec, expr, adjoint, t):
    """What flows from ``expr`` into ``t``, unsimplified (mirrors ``reverse._backprop``)."""
    local, placeholders, back = local_form(spec, expr)
    total = []
    if t.symbol in local.free_symbols:
        part = sp.diff(local, t.symbol).xreplace(back)
        if part != 0:
            total.append(_sum_over(spec, part * adjoint, spec.axes_of(adjoint * part) - t.axes))
    for ph, red in placeholders.items():
        if t.symbol not in red.body.free_symbols:
            continue
        part = sp.diff(local, ph).xreplace(back)
        if part == 0:
            continue
        flow = adjoint * part
        flow = _sum_over(spec, flow, spec.axes_of(adjoint * part) - spec.axes_of(red))
        if isinstance(red, Max):
            flow = sp.Mul(flow, ArgmaxMask(red.axis, red.body), evaluate=False)
        inner = _local_term(spec, red.body, flow, t)
        if inner != 0:
            total.append(inner)
    return sp.Add(*total, evaluate=False) if len(total) > 1 else (total[0] if total else sp.S.Zero)


def _elementwise_partial(spec, expr, t):
    """∂expr/∂t for one element of ``t`` (through reductions too), or None where a reduction's
    gradient must first be summed over an axis (then only the chain line is shown)."""
    local, placeholders, back = local_form(spec, expr)
    total = sp.diff(local, t.symbol).xreplace(back) if t.symbol in local.free_symbols else sp.S.Zero
    for ph, red in placeholders.items():
        if t.symbol not in red.body.free_symbols:
            continue
        part = sp.diff(local, ph).xreplace(back)
        if spec.axes_of(part) - spec.axes_of(red):
            return None
        inner = _elementwise_partial(spec, red.body, t)
        if inner is None:
            return None
        mask = ArgmaxMask(red.axis, red.body) if isinstance(red, Max) else 1
        total += part * mask * inner
    return total


def _sum_over(spec, expr, axes):
    for a in sorted(axes, key=spec.axis_position, reverse=True):
        expr = Sum(a, expr)
    return expr


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
    axes = ", ".join(f"`{a}`" for a in missing)
    if contractions:
        r = contractions[0]
        others = sorted({spec.tensor_of(s).name for s in r.body.free_symbols
                         if spec.is_tensor(s) and s != t.symbol})
        words.append(f"`{y.name}` multiplies `{t.name}` with {', '.join(f'`{o}`' for o in others)} and "
                     f"sums along `{r.axis}` (a contraction, like a matrix product), so the local partial "
                     f"of an element of `{t.name}` is the matching element of "
                     f"{', '.join(f'`{o}`' for o in others)}"
                     + (f"; each element of `{t.name}` is used for every index of {axes}, so its "
                        f"gradient sums the terms over {axes}." if missing else "."))
    elif missing:
        words.append(f"`{t.name}` has shape {shape_of(t.dims)} but `{y.name}` {shape_of(y.dims)} "
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


# -- identities --------------------------------------------------------------------------------


def _identity_chain(spec, lhs, rhs, defnum) -> list:
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


def _identity_note(spec, lhs) -> str:
    body = lhs.body if isinstance(lhs, Sum) else lhs
    names = sorted({spec.tensor_of(s).name for s in body.free_symbols if spec.is_tensor(s)})
    return (f"Why: the definitions make {', '.join(f'`{n}`' for n in names)} summed along "
            f"`{lhs.axis}` free of every tensor.")


# -- paths -------------------------------------------------------------------------------------


def _paths(spec, ch) -> list:
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


def _first_zero(spec, path, paths, rewrites, idmap) -> bool:
    """The path is zero and the path one step shorter is not (so it is reported once)."""
    values = {tuple(p): v for p, v in paths}
    if _closed(spec, values[tuple(path)], rewrites, idmap) != 0:
        return False
    prefix = tuple(path[:-1])
    return prefix not in values or _closed(spec, values[prefix], rewrites, idmap) != 0


def _closed(spec, expr, rewrites, idmap):
    steps = _simplify_steps(spec, expr, rewrites, idmap, {}, {})
    return steps[-1].expr if steps else expr


def _zero_reason(chain) -> str:
    used = [s.reason for s in chain if s.reason.startswith("by the identit")]
    if used:
        return "It is zero " + used[0] + "."
    return "Its terms cancel."


# -- from chunked to fused ---------------------------------------------------------------------


def _closed_form_chain(spec, ch, inliner, name, rewrites, idmap, stepnum, idnum, defnum) -> list:
    start = ch.gradient(name)
    chain = [Step(start, f"the chunked step ({stepnum[name]})")]
    full = inliner.full(start)
    if full != start:
        used = sorted({stepnum[n] for n in _chain_names(ch, name)} - {stepnum[name]})
        chain.append(Step(full, "inline " + ", ".join(f"({k})" for k in used)
                          + f": each gradient replaced by its own step, down to "
                            f"`{spec.adjoint(spec.output_tensor.name)}`"))
    chain += _simplify_steps(spec, full, rewrites, idmap, idnum, defnum)
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


def _simplify_steps(spec, expr, rewrites, idmap, idnum, defnum) -> list:
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
