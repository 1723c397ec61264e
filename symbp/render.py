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
import re
from dataclasses import dataclass
from pathlib import Path

import jinja2

from symbp.derivation import Derivation, derive
from symbp.fileio import write_atomic
from symbp.layers import builtin_names, load
from symbp.report import equation_numbers, markdown
from symbp.spec import SpecError, check_identifier

# symbp/templates (the fallback is a checkout from before they moved there)
TEMPLATES = next((p for p in (Path(__file__).resolve().parent / "templates",
                              Path(__file__).resolve().parent.parent / "templates") if p.is_dir()),
                 Path(__file__).resolve().parent / "templates")
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
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), keep_trailing_newline=True,
                              undefined=jinja2.StrictUndefined, autoescape=False)


def _line(s) -> str:
    shape = "(" + ", ".join(str(a) for a in s.dims) + ("," if len(s.dims) == 1 else "") + ")"
    note = f"{shape}" + (f" {s.comment}" if s.comment else "")
    return f"{s.target} = {s.code}  # {note}"


_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _reads(lines, available) -> list:
    """Names from ``available`` that the code lines use, in ``available`` order."""
    used = set()
    for line in lines:
        used |= set(_WORD.findall(line.split("  #")[0]))
    return [a for a in available if a in used]


#: names the generated module itself uses; a spec may not take them
RESERVED = {"ctx", "chunked", "torch", "forward", "backward", "backward_chunked", "Function",
            "out", "saved", "grads"}


def module_context(d: Derivation, variant: Variant, spec_ref: str) -> dict:
    from symbp.lower import lower_statements  # imports torch (through TorchPrinter): only when rendering

    spec, ch = d.spec, d.chunked
    clash = RESERVED & (set(spec.tensors) | set(spec.options) | {a.name for a in spec.axis_list}
                        | {spec.adjoint(t.name).name for t in spec.tensors.values() if t.role != "classes"})
    if clash:
        raise SpecError(f"spec {spec.name!r}: {', '.join(sorted(clash))} is reserved in generated code")
    out = spec.output_tensor
    args = spec.arguments
    env = {t.symbol: t.dims for t in spec.tensors.values()}
    sizes = [f"{axis.name} = {_size_source(args, axis)}" for axis in spec.axis_list]
    guards = _size_guards(spec)
    fwd_rows = [(t.name, t.expr, t.dims, f"{t.name} = {t.expr}") for t in spec.bindings]
    forward_lines = [_line(s) for s in lower_statements(spec, fwd_rows, env, cse=False)]

    adj_env = dict(env)
    adj_env.update({spec.adjoint(t.name): t.dims for t in spec.tensors.values() if t.role != "classes"})
    grad = spec.adjoint(out.name).name

    consumers = {}
    for name in ch.order:
        consumers[name] = sorted({c.via for c in ch.contributions[name]})
    eqn = equation_numbers(d)  # each backward line cites the equation it implements
    chunk_rows = [(spec.adjoint(n).name, e, spec.tensors[n].dims,
                   f"({eqn['chunked'][spec.adjoint(n).name]}) through "
                   + ", ".join(f"{v} = {spec.tensors[v].expr}" for v in consumers[n]))
                  for n, e in ch.statements()]
    chunk_lines = [_line(s) for s in lower_statements(spec, chunk_rows, adj_env, cse=False)]

    diff_inputs = [t for t in spec.differentiable]
    fused_rows = []
    for t in diff_inputs:
        e = d.fused.gradients.get(t.name)
        if e is None:
            raise ValueError(f"{t.name} gets no gradient")
        fused_rows.append((spec.adjoint(t.name).name, e, t.dims,
                           f"({eqn['fused'][spec.adjoint(t.name).name]}) fused: d{out.name} -> d{t.name}"))
    fused_stmts = lower_statements(spec, fused_rows, adj_env, cse=True)
    fused_lines = [_line(s) for s in fused_stmts]

    tensor_names = [t.name for t in spec.tensors.values()]
    ctx_keys = [a.name for a in spec.axis_list] + tensor_names + list(spec.options)
    fused_reads = _reads(fused_lines, ctx_keys)
    chunk_reads = _reads(chunk_lines, ctx_keys)
    fused_saved_tensors = [k for k in fused_reads if k in spec.tensors]
    fused_scalars = [k for k in fused_reads if k not in spec.tensors]

    signature = ", ".join([t.name for t in args] + [f"{o.name}={o.name.upper()}"
                                                    for o in spec.options.values()])
    call_args = ", ".join([t.name for t in args] + [f"{o.name}={o.name}" for o in spec.options.values()])
    grads_for_apply = ", ".join(
        [spec.adjoint(t.name).name if t.differentiable else "None" for t in args]
        + ["None" for _ in spec.options])
    ctx_items = [a.name for a in spec.axis_list] + tensor_names + list(spec.options)
    params = [t for t in args if t.role == "param"]
    inputs = [t for t in args if t.role != "param"]
    diff_in = [t for t in inputs if t.differentiable]
    layer_class = getattr(d.layer.module, "CLASS", None) or "".join(
        w.capitalize() for w in variant.module.split("_"))
    check_identifier(layer_class, "layer class name")
    return {
        "class_name": layer_class,
        "param_list": ", ".join(t.name for t in params) or "no parameters",
        "init_params": "".join(f", {t.name}" for t in params)
        + "".join(f", {o.name}={o.name.upper()}" for o in spec.options.values()),
        "init_lines": [f"self.{t.name} = {t.name}" for t in params]
        + [f"self.{o.name} = {o.name}" for o in spec.options.values()],
        "self_params": ", ".join(f"self.{t.name}" for t in params),
        "call_inputs": "".join(f", {t.name}" for t in inputs),
        "forward_call": ", ".join((f"self.{t.name}" if t.role == "param" else t.name) for t in args)
        + "".join(f", {o.name}=self.{o.name}" for o in spec.options.values()),
        "grads_dict": ", ".join(f'"{t.name}": {spec.adjoint(t.name).name}' for t in params),
        "input_grads": ", ".join(spec.adjoint(t.name).name for t in diff_in) or "None",
        "module": variant.module,
        "template": MODULE_TEMPLATE,
        "spec_ref": spec_ref,
        "description": d.layer.description,
        "settings": ", ".join(f"{k}={v}" for k, v in spec.settings.items()) or "none",
        "options": [f"{o.name.upper()} = {o.default!r}" for o in spec.options.values()],
        "signature": signature,
        "call_args": call_args,
        "arg_docs": [f"{t.name}: {_arg_doc(t)}" for t in args],
        "sizes": sizes,
        "guards": guards,
        "forward_lines": forward_lines,
        "output": out.name,
        "ctx_items": ctx_items,
        "grad": grad,
        "fused_reads": fused_reads,
        "fused_lines": fused_lines,
        "fused_returns": ", ".join(spec.adjoint(t.name).name for t in diff_inputs),
        "chunk_reads": chunk_reads,
        "chunk_lines": chunk_lines,
        "chunk_returns": [spec.adjoint(n).name for n in ch.order],
        "fused_ctx": ", ".join(f'"{k}": {k}' for k in fused_reads),
        "save_args": ", ".join(f'saved["{k}"]' for k in fused_saved_tensors),
        "save_names": ", ".join(f'"{k}"' for k in fused_saved_tensors),
        "save_scalars": ", ".join(f'"{k}": saved["{k}"]' for k in fused_scalars),
        "grads_for_apply": grads_for_apply,
        "differentiable": [t.name for t in diff_inputs],
    }


def _size_source(args, axis) -> str:
    """``arg.shape[k]`` of the first argument that stores ``axis`` (class indices store their index dims)."""
    for t in args:
        dims = t.index_dims if t.role == "classes" else t.dims
        if axis in dims:
            return f"{t.name}.shape[{dims.index(axis)}]"
    raise SpecError(f"axis {axis} is not a dim of any argument, so its size is unknown")


def _size_guards(spec) -> list:
    """``(condition, message)`` for each axis-size divisor, e.g. Bessel's ``n - 1``."""
    import sympy as sp

    axes = set(spec.axis_list)
    found = []
    for t in spec.bindings:
        for node in sp.preorder_traversal(t.expr):
            if isinstance(node, sp.Pow) and node.exp.is_negative and node.base.free_symbols <= axes \
                    and node.base.free_symbols and not node.base.is_Symbol and node.base not in found:
                found.append(node.base)
    sizes = ", ".join(f"{a.name}={{{a.name}}}" for a in spec.axis_list)
    return [(f"{b} <= 0", f"{spec.name}: {_brace_safe(b)} must be positive for this layer; got {sizes}")
            for b in found]


def _brace_safe(expr) -> str:
    """``expr`` as text that can sit inside the generated f-string."""
    return str(expr).replace("{", "{{").replace("}", "}}")


def _arg_doc(t) -> str:
    def dims(ds):
        return "(" + ", ".join(str(a) for a in ds) + ("," if len(ds) == 1 else "") + ")"

    if t.role == "classes":
        return f"integer class indices {dims(t.index_dims)}, values in [0, {t.class_axis})"
    return f"{'parameter' if t.role == 'param' else 'input'} {dims(t.dims)}"


def cache_key(variant: Variant, spec_ref: str) -> str:
    """Hash of everything a variant's output depends on: the spec file, its options, the
    SymPy version, symbp's own source and the templates."""
    import hashlib
    import json

    import sympy

    h = hashlib.sha256()
    h.update(Path(load(variant.layer).module.__file__).read_bytes())
    h.update(json.dumps([variant.module, variant.options, spec_ref, sympy.__version__],
                        sort_keys=True).encode())
    for path in sorted(Path(__file__).resolve().parent.rglob("*.py")) + sorted(TEMPLATES.glob("*.j2")):
        h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


def _cache_path(key: str) -> Path:
    import os

    from symbp.data import cache_dir

    base = Path(os.environ["SYMBP_CACHE_DIR"]) if os.environ.get("SYMBP_CACHE_DIR") else cache_dir()
    return base / "generate" / f"{key}.json"


def render_variant(variant: Variant, spec_ref: str, env=None, cache=True) -> dict:
    """``{filename: text}`` for one variant, from the cache when nothing it depends on changed."""
    import json

    path = _cache_path(cache_key(variant, spec_ref)) if cache else None
    if path is not None and path.is_file():
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            pass  # a damaged cache entry is rendered again
    files = _render_variant(variant, spec_ref, env)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, json.dumps(files, sort_keys=True))
        except OSError:
            pass  # a read-only cache only costs speed
    return files


def _render_variant(variant: Variant, spec_ref: str, env=None) -> dict:
    """``{filename: text}`` for one variant: its module and its Markdown derivation."""
    env = env or environment()
    d = derive(variant.layer, **variant.options)
    ctx = module_context(d, variant, spec_ref)
    module = env.get_template(MODULE_TEMPLATE).render(**ctx)
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


def write(files: dict, outdir) -> list:
    """Write files atomically where they changed; returns the names written."""
    outdir = Path(outdir)
    return [name for name, text in sorted(files.items()) if write_atomic(outdir / name, text)]


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
