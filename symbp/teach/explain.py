"""The lesson of a derivation, in reading order and numbered: :func:`build`.

A :class:`~symbp.teach.lesson.Lesson` is what a learner reads, in order: the notation, the
forward bindings as numbered equations, every chunked backward step written as the chain
rule (``chain_rule``), the identities the simplifier found and why they hold, the paths that
contribute nothing and why, the way from the chunked chain to the fused closed form as a
numbered chain of equalities (``fused_steps``), and the fused result. The views
(``text``, ``latex``, ``markdown``, ``graph``) print it; the generated code cites its
equation numbers.

Nothing here changes the math: every chain prints the steps the engine recorded as it
derived and simplified (``reverse.Contribution``, ``engine.trace``), and the last expression of
each chain is the engine's result.
"""

from __future__ import annotations

import sympy as sp

from symbp.engine.reverse import grad_name
from symbp.printing import shape_text
from symbp.spec import Max
from symbp.teach.chain_rule import chain_rule_step
from symbp.teach.fused_steps import (
    closed_form_chain,
    identity_chain,
    identity_note,
    paths,
    trace_steps,
    zero_paths,
    zero_reason,
)
from symbp.teach.lesson import Equation, Label, Lesson, Section, Step, ticked


def build(d) -> Lesson:
    """The lesson of a :class:`~symbp.engine.derivation.Derivation`."""
    spec, ch, fused = d.spec, d.chunked, d.fused
    counter = iter(range(1, 10_000))
    out = spec.output_tensor
    defnum = {}

    forward = []
    for t in spec.bindings:
        eq = Equation(next(counter), t.symbol, [Step(t.expr)], shape_text(t.dims), key=t.name)
        defnum[t.name] = eq.number
        forward.append(eq)

    backward = []
    stepnum = {}
    for name in ch.order:
        eq = chain_rule_step(spec, ch, name, defnum)
        eq.number = next(counter)
        stepnum[name] = eq.number
        backward.append(eq)

    all_paths = paths(spec, ch)
    inputs = [t.name for t in spec.differentiable if t.name in ch.contributions]
    # every identity the engine used, in the order found, so that the chains can cite them by number
    idmap: dict = {}
    for name in inputs:
        for k, v in fused.traces[name].found.items():
            idmap.setdefault(k, v)
    zeros = zero_paths(spec, fused, all_paths, idmap)
    zero_edges = set(d.vanishing_paths)

    identities, idnum = [], {}
    for lhs, rhs in idmap.items():
        eq = Equation(next(counter), lhs, identity_chain(spec, lhs, rhs, defnum), key=str(lhs))
        eq.notes = [identity_note(spec, lhs)]
        idnum[lhs] = eq.number
        identities.append(eq)

    vanishing = []
    for path, value in zeros:
        target = path[-1]
        chain = [Step(value, "the local partials multiplied along the path")]
        chain += trace_steps(spec, fused.trace(spec, value), idnum, defnum)
        names = " → ".join(f"`{p}`" for p in path)
        eq = Equation(next(counter), Label(spec.adjoint(target), "this path"), chain,
                      key="path:" + ">".join(path))
        eq.notes = [f"The path {names} carries nothing to `{spec.adjoint(target)}`. {zero_reason(chain)}"]
        vanishing.append((path, eq))
    edge_num = {}
    for target, via in sorted(zero_edges, key=lambda k: stepnum.get(k[0], 0)):
        # the term the engine's path value is of (the last through ``via``, as ``fuse`` keys them)
        c = [c for c in ch.contributions[target] if c.via == via][-1]
        chain = [Step(c.expr, f"the term through `{via}` in ({stepnum[target]})")]
        whole = [k for k in edge_num if k[0] == via]
        if whole and len(whole) == len(ch.contributions[via]):
            chain.append(Step(sp.S.Zero, f"`{spec.adjoint(via)}` = 0 by ({edge_num[whole[0]]})"))
            note = (f"Nothing reaches `{target}` through `{via}`, because the whole of "
                    f"`{spec.adjoint(via)}` is zero.")
        else:
            trace = fused.path_traces[(target, via)]
            if trace.start != c.expr:
                chain.append(Step(trace.start, "inline the chunked steps down to "
                                               f"`{spec.adjoint(out.name)}`"))
            chain += trace_steps(spec, trace, idnum, defnum)
            many = [p for p, _ in all_paths if len(p) > 1 and p[-1] == target and p[-2] == via]
            cancel = len(many) > 1 and not any(p == z for z, _ in zeros for p in many)
            note = (f"Everything that reaches `{target}` through `{via}` adds up to zero"
                    + (f", although none of its {len(many)} paths is zero on its own: they cancel"
                       if cancel else "") + ". " + zero_reason(chain))
        eq = Equation(next(counter), Label(spec.adjoint(target), f"through {via}"), chain,
                      key=f"edge:{target}<{via}", notes=[note])
        edge_num[(target, via)] = eq.number
        vanishing.append(([via, target], eq))

    fused_chains, already = [], []
    for name in inputs:
        chain = closed_form_chain(spec, ch, fused, name, stepnum, idnum, defnum)
        if len(chain) == 1:
            already.append(f"`{spec.adjoint(name)}` ({stepnum[name]})")
            continue
        fused_chains.append(Equation(next(counter), spec.adjoint(name), chain, key=grad_name(name)))
    fused_intro = [
        "For each input: start from its chunked step, inline the chain down to "
        f"`{spec.adjoint(out.name)}`, pull constants out of the sums, apply the identities, "
        f"write everything in the saved tensors ({ticked(spec.saved)}) and "
        "gather the common factor. Every `=` is one of these rewrites."]
    if already:
        one = len(already) == 1
        fused_intro.append(("The chunked step of " if one else "The chunked steps of ") + ", ".join(already)
                           + (" is" if one else " are") + " already in closed form.")

    results = []
    for name, expr in d.fused.gradients.items():
        results.append(Equation(next(counter), spec.adjoint(name), [Step(expr)],
                                shape_text(spec.tensors[name].dims), key=grad_name(name)))

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
    edges = []
    for t in spec.bindings:
        for s in sorted(t.expr.free_symbols, key=str):
            if spec.is_tensor(s):
                edges.append((spec.tensor_of(s).name, t.name))
    return Lesson(sections, _notation(spec), edges, zero_edges, vanishing)


def _notation(spec) -> list:
    out = spec.output_tensor
    lines = [
        f"`dX` means ∂L/∂X, the gradient of the loss L with respect to `X`; it has the shape of "
        f"`X`. The incoming gradient `{spec.adjoint(out.name)}` = ∂L/∂{out.name} is given.",
        "A name stands for one element of its tensor. `Σ_k(...)` sums along axis `k` and keeps it "
        "as a size-one dim, so `Σ_n(x)` of an `(n, d)` tensor has shape `(1, d)`. A mean is "
        "`Σ_n(...)/n`.",
        f"Axes: {ticked(spec.axis_list)}; each axis name is also its size. In a shape, `1` is a "
        "kept size-one dim, and such a tensor is reused (broadcast) along that axis.",
    ]
    if any(isinstance(n, Max) for t in spec.bindings for n in sp.preorder_traversal(t.expr)):
        lines.append("`1[x = max_k x]` is 1 where `x` is largest along `k` and 0 elsewhere: only the "
                     "arg-max gets the gradient of a max.")
    lines.append("Equations are numbered; each line of the generated code ends with the number of "
                 "the equation it implements, such as `# (9)`.")
    return lines
