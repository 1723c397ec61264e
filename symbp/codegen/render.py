"""Jinja rendering of derivations into ``generated/``: modules and Markdown.

Every built-in layer is generated with its default options, plus one variant
per non-default value of each choice option (``batchnorm_biased``), because
those change the formula. Float options (``eps``) stay runtime arguments.
Output is byte-for-byte reproducible (no timestamps, sorted everything),
written atomically and only when it changed; ``check`` renders in memory and
reports a unified diff instead of writing.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

import jinja2
import sympy as sp

from symbp.codegen.layout import layout
from symbp.engine.derivation import Derivation, derive
from symbp.engine.reverse import grad_name
from symbp.fileio import OutputError, write_atomic
from symbp.layers import builtin_names, load
from symbp.printing import human, shape_text
from symbp.spec import Reduction, SpecError, axis_divisors, check_identifier
from symbp.teach.lesson import equation_numbers
from symbp.teach.markdown import markdown

TEMPLATES = Path(__file__).resolve().parent / "templates"
MODULE_TEMPLATE = "layer.py.j2"
MARKDOWN_TEMPLATE = "derivation.md.j2"
PACKAGE_TEMPLATE = "package_init.py.j2"


@dataclass
class Variant:
    """One generated module: a layer with a fixed choice of structural options."""

    module: str  # the generated module's name
    layer: str  # layer name or spec path
    options: dict


def variants(layer_ref: str) -> list:
    lay = load(layer_ref)
    out = [Variant(lay.name, layer_ref, {})]
    for key, (default, kind, _) in lay.options.items():
        if isinstance(kind, tuple):
            out += [Variant(f"{lay.name}_{v}", layer_ref, {key: v}) for v in kind if v != default]
    for v in out:
        check_identifier(v.module, "generated module name")
    return out


def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined, autoescape=False)
    env.filters["grad_name"] = grad_name
    return env


def module_context(d: Derivation, variant: Variant, spec_ref: str) -> dict:
    """Facts about one generated module: names, lowered statements and what each reads.

    The template turns these into source; which tensors a backward reads is
    taken from the free symbols of its expressions, never from its text.
    """
    from symbp.codegen.statements import (
        lower_statements,  # imports torch (through TorchPrinter): only when rendering
    )

    spec, ch = d.spec, d.chunked
    out = spec.output_tensor
    args = spec.arguments
    diff = spec.differentiable
    grad = spec.adjoint(out.name)
    env = {t.symbol: t.dims for t in spec.tensors.values()}
    adj_env = dict(env)
    adj_env.update({spec.adjoint(t.name): t.dims for t in spec.tensors.values() if t.role != "classes"})
    # one-hot data and arithmetic on data take this tensor's dtype: an input or parameter, never data
    float_arg = next((t.name for t in args if t.role in ("input", "param")), None)

    eqn = equation_numbers(d)  # each backward line cites the equation it implements
    fwd_rows = [(t.name, t.expr, t.dims, f"{t.name} = {human(t.expr)}") for t in spec.bindings]
    forward_stmts = lower_statements(spec, fwd_rows, env, cse=False, float_like=float_arg)

    chunk_rows = [(grad_name(n), e, spec.tensors[n].dims,
                   f"({eqn['chunked'][grad_name(n)]}) through "
                   + ", ".join(f"{v} = {human(spec.tensors[v].expr)}"
                               for v in sorted({c.via for c in ch.contributions[n]})))
                  for n, e in ch.statements()]
    unreached = [t.name for t in diff if t.name not in ch.order]  # the output does not depend on them
    chunk_rows += [(grad_name(n), sp.S.Zero, spec.tensors[n].dims, f"the output does not depend on {n}")
                   for n in unreached]
    chunk_stmts = lower_statements(spec, chunk_rows, adj_env, cse=False, in_place=True,
                                   float_like=_float_tensor(spec, [r[1] for r in chunk_rows], grad))

    fused_rows = [(grad_name(t.name), d.fused.gradients.get(t.name, sp.S.Zero), t.dims,
                   f"({eqn['fused'][grad_name(t.name)]}) fused: d{out.name} -> d{t.name}") for t in diff]
    fused_stmts = lower_statements(spec, fused_rows, adj_env, cse=True,
                                   float_like=_float_tensor(spec, [r[1] for r in fused_rows], grad),
                                   known={e: grad_name(n) for n, e in ch.statements()},
                                   in_place=True, donate=grad)
    _guard_by_needs(fused_stmts, [grad_name(t.name) for t in diff])

    readable = [a.name for a in spec.axis_list] + [t.name for t in spec.tensors.values()] + list(spec.options)
    fused_reads = _reads([e for _, e, _, _ in fused_rows], spec, readable, fused_stmts)
    chunk_reads = _reads([e for _, e, _, _ in chunk_rows], spec, readable, chunk_stmts)
    sizes = [(axis.name, _size_source(args, axis)) for axis in spec.axis_list]
    arg_names = [t.name for t in args]
    recompute = any(k in spec.tensors and k not in arg_names and k != out.name for k in fused_reads)
    function_saved = []
    for k in ([] if recompute else fused_reads):
        if k == out.name:
            function_saved.append((k, "_out"))
        elif k in arg_names:
            function_saved.append((k, f"args[{arg_names.index(k)}]"))
        elif k in spec.options:
            function_saved.append((k, f"ctx.options[{list(spec.options).index(k)}]"))
        else:  # an axis size
            name, pos = _size_position(args, spec.axis_list[[a.name for a in spec.axis_list].index(k)])
            function_saved.append((k, f"args[{arg_names.index(name)}].shape[{pos}]"))
    params = [t.name for t in args if t.role == "param"]
    return {
        "module": variant.module,
        "template": MODULE_TEMPLATE,
        "spec_ref": spec_ref,
        "description": d.layer.description,
        "settings": ", ".join(f"{k}={v}" for k, v in spec.settings.items()) or "none",
        "class_name": d.layer.class_name(variant.module),
        "arguments": arg_names,
        "argument_docs": [f"{t.name}: {_arg_doc(t)}" for t in args],
        "signature": arg_names + [f"{o}={o.upper()}" for o in spec.options],
        "options": [{"name": o.name, "constant": o.name.upper(), "default": repr(o.default)}
                    for o in spec.options.values()],
        "params": params,
        "call_inputs": [t.name for t in args if t.role != "param"],
        "input_grads": [t.name for t in args if t.role == "input"],
        "differentiable": [t.name for t in diff],
        "diff_positions": [arg_names.index(t.name) for t in diff],
        "apply_returns": [f"grads[{[t.name for t in diff].index(t.name)}]" if t.differentiable else "None"
                          for t in args],
        "sizes": sizes,
        "guards": _size_guards(spec),
        "forward_stmts": forward_stmts,
        "output": out.name,
        "grad": grad.name,
        "context": readable,
        "fused_reads": fused_reads,
        "fused_blocks": _blocks(fused_stmts),
        "returns": _returns(fused_stmts, [grad_name(t.name) for t in diff]),
        "needs_code": _needs_code([arg_names.index(t.name) for t in diff]),
        "needs_guards": any(s.guard for s in fused_stmts),
        "donates": any(s.donated_code for s in fused_stmts),
        "guarded_grads": [s.target for s in fused_stmts
                          if s.guard and s.target in {grad_name(t.name) for t in diff}],
        "chunk_reads": chunk_reads,
        "chunk_stmts": chunk_stmts,
        "chunk_returns": [grad_name(n) for n in list(ch.order) + unreached],
        "recompute": recompute,
        "function_saved": function_saved,
        "uses_max_mask": any("_max_mask(" in s.code for s in forward_stmts + chunk_stmts + fused_stmts),
        "uses_float_dtype": any("_float_dtype(" in s.code for s in forward_stmts + chunk_stmts + fused_stmts),
    }


def _reads(exprs, spec, readable, stmts) -> list:
    """Which forward names (tensors, options, axis sizes) the expressions use, in ``readable`` order.

    Symbols come from the expressions; axis sizes that only the lowering names
    (a ``.expand(n, d)``, a one-hot width) come from the lowered statements,
    each of which records the sizes its own code names.
    """
    used = set().union(*(s.sizes for s in stmts))

    def visit(e):
        if isinstance(e, Reduction):  # the reduced axis is a dim, not a size the code reads
            visit(e.body)
        elif e.is_Symbol:
            used.add(e.name)
        else:
            for a in e.args:
                visit(a)

    for e in exprs:
        visit(e)
    return [k for k in readable if k in used]


def _float_tensor(spec, exprs, grad) -> str:
    """A floating-point forward tensor the backward reads (one-hot data takes its dtype), else the
    incoming gradient (which a caller may pass as a plain number, so it comes last)."""
    from symbp.codegen.lower import floating_tensors  # imports torch: only when rendering

    used = set().union(*(e.free_symbols for e in exprs))
    floats = floating_tensors(spec)
    return next((t.name for t in spec.tensors.values() if t.symbol in floats and t.symbol in used), grad.name)


def _returns(stmts, grads) -> list:
    """What ``backward`` returns: a gradient that other gradients also read is computed when any of
    them is needed, so it is returned only when it is needed itself."""
    guard = {s.target: s.guard for s in stmts}
    if not any(guard.values()):
        return list(grads)
    return [g if guard.get(g) == f"needs[{i}]" else f"{g} if needs[{i}] else None"
            for i, g in enumerate(grads)]


def _needs_code(positions) -> str:
    """``ctx.needs_input_grad`` of the differentiable arguments, as a slice where it can be."""
    if positions == list(range(len(positions))):
        return f"ctx.needs_input_grad[:{len(positions)}]"
    items = ", ".join(f"ctx.needs_input_grad[{i}]" for i in positions)
    return f"({items},)" if len(positions) == 1 else f"({items})"


def _blocks(stmts) -> list:
    """Consecutive statements with the same guard, as ``(guard, [stmts])``."""
    out = []
    for s in stmts:
        if out and out[-1][0] == s.guard:
            out[-1][1].append(s)
        else:
            out.append((s.guard, [s]))
    return out


def _guard_by_needs(stmts, grads) -> None:
    """Put each statement under ``needs[i]`` of the gradients that depend on it (none if all do)."""
    users = {g: {g} for g in grads}
    for s in reversed(stmts):
        if s.target in users:
            continue
        users[s.target] = set()
    for s in reversed(stmts):
        for other in stmts:
            if other.target in s.reads and other is not s:
                users[other.target] |= users[s.target]
    if len(grads) < 2:
        return
    for s in stmts:
        if users[s.target] and users[s.target] != set(grads):
            s.guard = " or ".join(f"needs[{grads.index(g)}]" for g in grads if g in users[s.target])


def _size_position(args, axis):
    """``(argument, dim)`` of the first argument that stores ``axis`` (class indices: their index dims)."""
    for t in args:
        dims = t.index_dims if t.role == "classes" else t.dims
        if axis in dims:
            return t.name, dims.index(axis)
    raise SpecError(f"axis {axis} is not a dim of any argument, so its size is unknown")


def _size_source(args, axis) -> str:
    name, pos = _size_position(args, axis)
    return f"{name}.shape[{pos}]"


def _size_guards(spec) -> list:
    """``(condition, message)`` for each axis-size divisor, e.g. Bessel's ``n - 1``."""
    found = axis_divisors(spec)
    sizes = ", ".join(f"{a.name}={{{a.name}}}" for a in spec.axis_list)
    return [(f"{b} <= 0", f"{spec.name}: {_brace_safe(b)} must be positive for this layer; got {sizes}")
            for b in found]


def _brace_safe(expr) -> str:
    """``expr`` as text that can sit inside the generated f-string."""
    return str(expr).replace("{", "{{").replace("}", "}}")


def _arg_doc(t) -> str:
    if t.role == "classes":
        return f"integer class indices {shape_text(t.index_dims)}, values in [0, {t.class_axis})"
    role = {"param": "parameter", "data": "data, not differentiated"}.get(t.role, "input")
    return f"{role} {shape_text(t.dims)}"


def render_variant(variant: Variant, spec_ref: str, env=None, cache=True) -> dict:
    """``{filename: text}`` for one variant, from the cache when nothing it depends on changed."""
    from symbp import cache as store

    if not cache:
        return _render_variant(variant, spec_ref, env)
    return store.produce("generate", variant.layer, [variant.module, variant.options, spec_ref],
                         lambda: _render_variant(variant, spec_ref, env))


def _render_variant(variant: Variant, spec_ref: str, env=None) -> dict:
    """``{filename: text}`` for one variant: its module and its Markdown derivation."""
    env = env or environment()
    d = derive(variant.layer, **variant.options)
    ctx = module_context(d, variant, spec_ref)
    module = layout(env.get_template(MODULE_TEMPLATE).render(**ctx), f"{variant.module}.py")
    md = env.get_template(MARKDOWN_TEMPLATE).render(
        template=MARKDOWN_TEMPLATE, spec_ref=spec_ref, module=variant.module,
        body=markdown(d, code=(variant.module, module)))
    return {f"{variant.module}.py": module, f"{variant.module}.md": md}


def render_all(layer_refs=None, cache=True) -> dict:
    """Every file of ``generated/`` for the built-in layers (or the given ones)."""
    env = environment()
    files = {}
    refs = layer_refs or builtin_names()
    modules = []
    for ref in refs:
        spec_ref = f"symbp/layers/{ref}.py" if ref in builtin_names() else Path(ref).name
        for v in variants(ref):
            suffix = ", ".join(f"{k}={val}" for k, val in v.options.items())
            files.update(render_variant(v, spec_ref + (f" with {suffix}" if suffix else ""), env, cache))
            modules.append(v.module)
    if layer_refs is None:
        files["__init__.py"] = env.get_template(PACKAGE_TEMPLATE).render(
            template=PACKAGE_TEMPLATE, modules=sorted(modules))
    return files


GENERATED_MARK = "@generated by symbp"


def write(files: dict, outdir) -> list:
    """Write files atomically where they changed; returns the names written. A file that is there
    and was not written by symbp (a spec, a user's module) is never replaced: nothing is written."""
    outdir = Path(outdir)
    for name in sorted(files):
        path = outdir / name
        if path.exists() and not _written_by_symbp(path):
            raise OutputError(f"{path} exists and was not generated by symbp; refusing to replace it "
                            f"(choose another output folder)")
    return [name for name, text in sorted(files.items()) if write_atomic(outdir / name, text)]


def _written_by_symbp(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return GENERATED_MARK in fh.read(400)
    except OSError:
        return False


def check(files: dict, outdir) -> str:
    """A unified diff between ``files`` and ``outdir`` ('' when up to date)."""
    outdir = Path(outdir)
    chunks = []
    for name, text in sorted(files.items()):
        path = outdir / name
        old = path.read_text(encoding="utf-8") if path.is_file() else ""
        if old != text:
            chunks += difflib.unified_diff(old.splitlines(True), text.splitlines(True),
                                           f"{path} (on disk)", f"{path} (regenerated)")
    return "".join(chunks)
