"""Statements: a list of ``(target, expression)`` rows becomes the lines of a generated function.

Common subexpressions become temporaries (``sympy.cse``), named for what they
hold where they can be: a temporary that is one of the targets takes its name,
one equal to a chunked gradient takes that gradient's name. A scale that every
use of a temporary shares is applied once, to the temporary. Each row is then
lowered by ``lower.TorchCode`` into its target's layout.
"""

from __future__ import annotations

import sympy as sp

from symbp.codegen.lower import LoweringError, Stmt, TorchCode, lower_expr
from symbp.spec import Spec, Sum


def lower_statements(spec: Spec, rows, env: dict, cse=True, temp_prefix="t", float_like=None,
                     known=None, in_place=False, donate=None) -> list:
    """CSE over ``rows = [(target, expr, dims, comment)]``, then lower each to a Stmt.

    A temporary equal to an expression in ``known`` (``{expr: name}``, such as the chunked
    gradients) takes that name. With ``in_place`` (backward passes: nothing differentiates
    them) a fresh result may be updated in place where that is safe; with ``donate`` (the
    incoming gradient's symbol) a statement may also compute in it, as ``Stmt.donated_code``.
    A ``LoweringError`` names the row (binding or gradient) it came from.
    """
    try:
        return _lower_statements(spec, rows, env, cse, temp_prefix, float_like, known or {}, in_place,
                                 donate)
    except LoweringError as e:
        if len(rows) == 1 or not cse:
            for target, expr, dims, _ in rows:
                try:
                    _lower_statements(spec, [(target, expr, dims, "")], env, False, temp_prefix,
                                      float_like, {}, in_place, donate)
                except LoweringError as inner:
                    raise LoweringError(f"spec {spec.name!r}, {target}: {inner}") from None
        raise LoweringError(f"spec {spec.name!r}: {e}") from None


def _lower_statements(spec, rows, env, cse, temp_prefix, float_like, known, in_place, donate) -> list:
    env = dict(env)
    printer = TorchCode(spec, env, float_like)
    printer.in_place = in_place
    exprs = [r[1] for r in rows]
    targets = {r[0] for r in rows}
    taken = set(spec.tensors) | {s.name for s in env}
    known = {e: n for e, n in known.items() if n not in targets and n not in spec.tensors}
    chunked_names = set(known.values())
    names = (sp.Symbol(f"{temp_prefix}{i}", real=True) for i in range(10**6)
             if f"{temp_prefix}{i}" not in taken)

    def name_for(expr):
        if expr in known:
            return sp.Symbol(known.pop(expr), real=True)
        return next(names)
    # contractions first: each becomes a temporary of its own
    pulled, stmts = [], []
    for e in exprs:
        for node in sp.postorder_traversal(e):
            if isinstance(node, Sum) and node not in pulled and printer._contraction(node) is not None:
                pulled.append(node)
    uses = {node: sum(1 for e in exprs for n in sp.preorder_traversal(e) if n == node) for node in pulled}
    repl = {}
    for node in pulled:
        if uses[node] > 1:
            sym = name_for(node)
            code, dims = printer._contraction(node)
            env[sym] = dims
            printer.mark_float(sym, node)
            printer.note_sources(sym.name, node)
            note = (f"fused: as {sym.name} in the chunked pass, used more than once"
                    if sym.name in chunked_names else "contraction used more than once")
            stmts.append(Stmt(sym.name, code, dims, note, reads=_names(node)))
            repl[node] = sym
    exprs = [e.xreplace(repl) for e in exprs]
    temps, reduced = sp.cse(exprs, symbols=names, order="none") if cse else ([], exprs)
    temps, reduced = _fold_shared_scales(temps, reduced, printer)
    named = {sym: sp.Symbol(known.pop(sub), real=True) for sym, sub in temps if sub in known}
    notes = {s.name: f"fused: as {s.name} in the chunked pass" for s in named.values()}
    temps = [(named.get(sym, sym), sub.xreplace(named)) for sym, sub in temps]
    reduced = [e.xreplace(named) for e in reduced]
    dims_env = dict(env)
    for sym, sub in temps:
        dims_env[sym] = printer.dims(sub)
    temps, reduced, rows, comments = _name_temps_after_targets(temps, reduced, rows, dims_env)
    def printed(stmt: Stmt) -> Stmt:  # with the sizes its own code names, and no other's
        stmt.sizes, printer.sizes_used = frozenset(printer.sizes_used), set()
        return stmt

    printer.sizes_used = set()
    body = [(sym, sub, None, comments.get(sym.name, notes.get(sym.name, ""))) for sym, sub in temps]
    body += [(sp.Symbol(r[0]), e, tuple(r[2]), r[3]) for r, e in zip(rows, reduced)]
    donating = _donating_statement([e for _, e, _, _ in body], donate)
    for k, (sym, e, dims, note) in enumerate(body):
        if dims is None:  # a temporary: the printer reads env, so later temps see this one
            dims = env[sym] = printer.dims(e)
            printer.mark_float(sym, e)
        codes = []
        for given in (None, donate) if k == donating else (None,):  # plain, then computing in dy
            printer.begin_statement(donated=given)
            codes.append(printer.doprint(e) if k < len(temps) else lower_expr(printer, e, dims))
        printer.begin_statement()
        printer.note_sources(sym.name, e)
        stmt = printed(Stmt(sym.name, codes[0], dims, note, reads=_names(e)))
        stmt.donated_code = codes[-1] if codes[-1] != codes[0] else ""
        stmts.append(stmt)
    return stmts


def _donating_statement(exprs, donate) -> int | None:
    """Which of the statements ``exprs`` (in order) may compute in the donated gradient
    ``donate``: the last to read it, if it reads it once and no earlier one holds it unchanged
    (``dx = dy``, which an update in place would change); None for none."""
    readers = [k for k, e in enumerate(exprs) if donate is not None and e.has(donate)]
    if not readers or any(exprs[k] == donate for k in readers[:-1]):
        return None
    last = readers[-1]
    return last if sum(1 for node in sp.preorder_traversal(exprs[last]) if node == donate) == 1 else None


def _name_temps_after_targets(temps, reduced, rows, env):
    """A temporary that is exactly one of the targets takes the target's name (and comment), and
    the target's own ``dbngain = t0`` line goes: ``dbngain = (bnraw*dy).sum(...)`` is then reused.

    Returns ``(temps, reduced, rows, comments)`` with ``comments`` keyed by renamed temporary."""
    rename, comments = {}, {}
    temp_syms = {sym for sym, _ in temps}
    for row, e in zip(rows, reduced):
        if e in temp_syms and e not in rename and env[e] == tuple(row[2]):
            rename[e] = next((s for s in env if s.name == row[0]), None) or sp.Symbol(row[0], real=True)
            comments[row[0]] = row[3]
    if not rename:
        return temps, reduced, rows, comments
    kept = [(row, e.xreplace(rename)) for row, e in zip(rows, reduced) if row[0] not in comments]
    temps = [(rename.get(sym, sym), sub.xreplace(rename)) for sym, sub in temps]
    return temps, [e for _, e in kept], [r for r, _ in kept], comments


def _fold_shared_scales(temps, reduced, printer):
    """A temporary that every statement reading it scales by the same scalar, inside a contraction
    (``dq = c*(t @ k)``, ``dk = c*(t.mT @ q)``), takes the scale itself: one multiplication of ``t``
    instead of one per use. A temporary then read once is put back in place."""
    temps = list(temps)
    for sym, sub in temps:
        printer.env[sym] = printer.dims(sub)  # a scale has no dims, so folding keeps these
    for i, (sym, sub) in enumerate(temps):
        scales, users = set(), []
        for j, e in enumerate(reduced):
            if not e.has(sym):
                continue
            sums = [f for f in sp.Mul.make_args(e) if isinstance(f, Sum) and f.has(sym)]
            rest = [f for f in sp.Mul.make_args(e) if not (isinstance(f, Sum) and f.has(sym))]
            scale = sp.Mul(*rest)
            if len(sums) != 1 or scale.has(sym) or printer.dims(scale) != () or scale == 1 \
                    or printer._contraction(sums[0]) is None or not _a_plain_factor(sym, sums[0]):
                scales.add(None)
                break
            scales.add(scale)
            users.append(j)
        later = any(s.has(sym) for _, s in temps[i + 1:])
        if len(scales) != 1 or None in scales or len(users) < 2 or later:
            continue
        (scale,) = scales
        if any(scale.has(s) for s, _ in temps[i:]):  # the scale must be known before the temporary
            continue
        temps[i] = (sym, scale * sub)
        for j in users:
            reduced[j] = reduced[j] / scale
        printer._memo.clear()  # dims and contractions were memoised on the old expressions
    return _inline_single_uses(temps, reduced)


def _a_plain_factor(sym, contraction) -> bool:
    """``sym`` multiplies the summed body once and nowhere else, so scaling it scales the sum."""
    body = contraction
    while isinstance(body, Sum):
        body = body.body
    factors = sp.Mul.make_args(body)
    return factors.count(sym) == 1 and not any(f.has(sym) for f in factors if f != sym)


def _inline_single_uses(temps, reduced):
    """Temporaries that only one expression reads, put back into it."""
    while True:
        everything = [s for _, s in temps] + list(reduced)
        once = next((k for k, (sym, _) in enumerate(temps)
                     if sum(sum(1 for n in sp.preorder_traversal(e) if n == sym) for e in everything) == 1),
                    None)
        if once is None:
            return temps, reduced
        sym, sub = temps.pop(once)
        temps = [(s, e.xreplace({sym: sub})) for s, e in temps]
        reduced = [e.xreplace({sym: sub}) for e in reduced]


def _names(expr) -> frozenset:
    return frozenset(s.name for s in expr.free_symbols)
