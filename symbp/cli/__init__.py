"""The ``symbp`` command line.

    symbp list
    symbp derive LAYER [--format text|latex|markdown] [-o FILE] [--OPTION VALUE ...]
    symbp generate [LAYER ...] [-o OUTDIR] [--check]
    symbp check LAYER [--batch N] [--dtype float32|float64] [--OPTION VALUE ...]
    symbp grade LAYER ANSWER.py [--OPTION VALUE ...]
    symbp train [-i FILE] [--steps N] [--backward generated|autograd] [--out DIR] [--resume] ...
    symbp sample [--out DIR] [-n 20]

A layer's own options (``--eps 1e-3``, ``--variance biased``) follow the
layer name. Every failure the user can cause is a ``symbp.errors.SymbpError``:
one line on stderr and its exit status (2, or 1 when training diverges); Ctrl-C
is 130. Nothing is written unless all of it could be produced.
"""

from __future__ import annotations

import argparse
import sys

from symbp.errors import EXIT_INTERRUPTED, EXIT_USAGE, SymbpError, UsageError


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _layer_options(extra: list) -> dict:
    """``--name value`` / ``--name=value`` pairs left over by argparse."""
    opts, i = {}, 0
    while i < len(extra):
        tok = extra[i]
        if not tok.startswith("--") or len(tok) < 3:
            raise UsageError(f"unexpected argument {tok!r}")
        key, eq, value = tok[2:].partition("=")
        if not eq:
            if i + 1 >= len(extra):
                raise UsageError(f"option --{key} needs a value")
            value, i = extra[i + 1], i + 1
        opts[key.replace("-", "_")] = value
        i += 1
    return opts


def _derive_arguments(d, layer=True) -> None:
    if layer:
        d.add_argument("layer", help="a built-in layer name or a spec file path; `symbp derive LAYER --help` "
                                     "lists that layer's own options")
    d.add_argument("--format", default="text", metavar="{" + ",".join(FORMATS) + "}",
                   help="text (terminal), latex (a pdflatex document), markdown, or svg (a picture of the "
                        "layer's graph) (default text)")
    d.add_argument("-o", "--output", help="write to FILE instead of standard output")


def layer_help(command: str, layer_ref: str) -> str:
    """``symbp derive LAYER --help``: the command's options and the layer's own, with defaults."""
    from symbp.layers import load

    lay = load(layer_ref)
    p = argparse.ArgumentParser(prog=f"symbp {command} {layer_ref}", add_help=False,
                                description=f"{lay.name}: {lay.description}")
    if command == "derive":
        _derive_arguments(p, layer=False)
    group = p.add_argument_group(f"options of {lay.name}" if lay.options else f"{lay.name} has no options")
    for key, (default, kind, words) in lay.options.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(kind, tuple):
            group.add_argument(flag, choices=kind, default=default,
                               help=f"{words} (default {default}; a choice changes the formula)")
        else:
            group.add_argument(flag, type=float, default=default, metavar="X",
                               help=f"{words} (default {default:g}; a runtime scalar, symbolic in the math)")
    return p.format_help()


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="symbp", description="Derive, simplify, typeset and generate backward passes.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("list", help="name the known layers")
    d = sub.add_parser("derive", help="print a layer's derivation",
                       description="Print the forward bindings, the chunked backward and the fused "
                                   "closed form. Layer options follow the layer: --eps 1e-3.")
    _derive_arguments(d)
    g = sub.add_parser("generate", help="write the generated modules and derivations",
                       description="Render the templates into generated/ (or OUTDIR). With --check, "
                                   "write nothing and exit 1 with a diff if anything is stale.")
    g.add_argument("layers", nargs="*", help="layer names or spec files (default: every built-in layer)")
    g.add_argument("-o", "--outdir", help="output folder (default: the generated/ package)")
    g.add_argument("--check", action="store_true", help="compare instead of writing")
    g.add_argument("--no-cache", action="store_true",
                   help="derive every layer again instead of reusing results for unchanged specs")
    c = sub.add_parser("check", help="compare a layer's generated backward with an independent reference",
                       description="Print name | exact | approximate | maxdiff for every gradient "
                                   "against torch autograd of an independent evaluator of the spec, on a "
                                   "random batch; exit 1 on a mismatch.")
    c.add_argument("layer", help="a built-in layer name or a spec file path")
    c.add_argument("--batch", type=int, default=32, help="batch size (default 32)")
    c.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    c.add_argument("--seed", type=int, default=0)
    gr = sub.add_parser("grade", help="check a hand-written backward and say what is wrong",
                        description="Read ANSWER.py (dNAME = <torch expression> lines, not run) and print "
                                    "dNAME: correct / dNAME: wrong: <diagnosis> for each gradient. Exit 0 if "
                                    "all are correct, 1 if any is wrong, 2 if the answer cannot be read.")
    gr.add_argument("layer", help="a built-in layer name or a spec file path")
    gr.add_argument("answer", help="the learner's answer, a .py file")
    from symbp.cli.train import add_parsers  # train, sample (imports torch only when run)

    add_parsers(sub)
    return p


def cmd_list(args, extra) -> int:
    from symbp import list_layers

    layers = list_layers()
    width = max(map(len, layers))
    for name, desc in layers.items():
        print(f"{name.ljust(width)}  {desc}")
    return 0


FORMATS = {"text": "text", "latex": "latex", "markdown": "markdown", "svg": "svg"}


def cmd_derive(args, extra) -> int:
    if args.format not in FORMATS:
        raise UsageError(f"unknown format {args.format!r}; choose {', '.join(FORMATS)}")
    from pathlib import Path

    from symbp import cache

    if args.output and Path(args.output).suffix == ".py":
        raise UsageError(f"{args.output}: a derivation is not Python; choose another -o file "
                         f"(a .txt, .tex, .md or .svg)")
    options = _layer_options(extra)

    def make():
        from symbp.engine.derivation import derive

        return getattr(derive(args.layer, **options), FORMATS[args.format])()

    _emit(cache.produce("derive", args.layer, [args.format, sorted(options.items())], make), args.output)
    return 0


def default_outdir():
    from pathlib import Path

    return Path(__file__).resolve().parents[2] / "generated"


def cmd_generate(args, extra) -> int:
    from symbp.codegen import render
    from symbp.layers import builtin_names

    builtin = set(builtin_names())
    if args.layers and all(ref in builtin for ref in args.layers) and not args.outdir:
        refs = None  # the built-in set is always written whole, so its index stays right
    else:
        refs = args.layers or None
    files = render.render_all(refs, cache=not args.no_cache)
    outdir = args.outdir or default_outdir()
    if args.check:
        diff = render.check(files, outdir)
        if diff:
            sys.stdout.write(diff)
            print("symbp: generated code is stale or edited by hand; run `symbp generate`", file=sys.stderr)
            return 1
        print(f"{len(files)} generated files are up to date")
        return 0
    from pathlib import Path

    if not Path(outdir).is_dir():
        raise UsageError(f"output folder {str(outdir)!r} does not exist")
    written = render.write(files, outdir)
    print(f"wrote {len(written)} of {len(files)} files to {outdir}" + (
        "" if written else " (all up to date)"))
    return 0


def cmd_check(args, extra) -> int:
    if args.batch < 2:
        raise UsageError("--batch must be at least 2")
    import torch

    from symbp.verify.check import compare, default_sizes, load_generated, random_arguments

    module = load_generated(args.layer, _layer_options(extra))
    g = torch.Generator().manual_seed(args.seed)
    dtype = getattr(torch, args.dtype)
    sizes = default_sizes(module.SPEC, args.batch)
    rows = compare(module, random_arguments(module.SPEC, sizes, dtype, g))
    for r in rows:
        print(r.line())
    bad = [r.name for r in rows if not r.approximate]
    print(f"{len(rows) - len(bad)} of {len(rows)} gradients match autograd of the independent reference "
          f"evaluator ({args.dtype}; sizes {', '.join(f'{k}={v}' for k, v in sizes.items())})")
    from symbp.engine.derivation import derive
    from symbp.engine.prove import prove_exact, side_conditions

    d = derive(args.layer, **_layer_options(extra))
    axes = ", ".join(a.name for a in d.spec.axis_list)
    conditions = "; ".join(side_conditions(d.spec)) or "none"
    wrong = []
    for name, p in prove_exact(d).items():
        if p["proved_symbolically"]:
            print(f"proof: fused {name} = chunked chain for all sizes of {axes} (SymPy with symbp's "
                  f"reduction rules; side conditions: {conditions})")
        else:
            print(f"proof: fused {name} was not shown equal to the chunked chain symbolically")
        tried = "; ".join(", ".join(f"{k}={v}" for k, v in s.items()) for s in p["sizes_tested"])
        kind = "exact rationals" if p["exact"] else "exact rationals and 50-digit floats"
        if p["exact_random_ok"]:
            print(f"exact check: fused {name} = chunked chain at {p['points']} random points ({kind}; "
                  f"sizes {tried}), sharing no rule with the simplifier")
        else:
            wrong.append(name)
            print(f"exact check: fused {name} DIFFERS from the chunked chain (sizes {tried}): "
                  f"{p['counterexample']}")
    return 1 if bad or wrong else 0


def cmd_grade(args, extra) -> int:
    from pathlib import Path

    from symbp.grading import grade

    path = Path(args.answer)
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read {args.answer}: {getattr(e, 'strerror', None) or e}") from None
    report = grade(args.layer, source, filename=path.name, **_layer_options(extra))
    sys.stdout.write(report.text())
    for note in report.notes():
        print(f"symbp: note: {note}", file=sys.stderr)
    return 0 if report.all_correct else 1


def _emit(content: str, output) -> None:
    if output:
        from symbp.fileio import write_atomic

        write_atomic(output, content)
    else:
        sys.stdout.write(content)


COMMANDS = {"list": cmd_list, "derive": cmd_derive, "generate": cmd_generate, "check": cmd_check,
            "grade": cmd_grade}


#: what a console that cannot print the derivation's symbols gets instead
ASCII_FALLBACK = {"Σ": "Sum", "→": "->", "·": "*", "≤": "<=", "≥": ">=", "≠": "!=", "ε": "eps", "−": "-"}


def _ascii_fallback(err: UnicodeEncodeError):
    bad = err.object[err.start:err.end]
    return "".join(ASCII_FALLBACK.get(ch, "?") for ch in bad), err.end


def use_ascii_fallback() -> None:
    """Let stdout and stderr print ``Sum`` for ``Σ`` (and so on) where their encoding has no ``Σ``."""
    import codecs

    codecs.register_error("symbp_ascii", _ascii_fallback)
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            try:
                stream.reconfigure(errors="symbp_ascii")
            except (ValueError, OSError):
                pass


def main(argv=None) -> int:
    import os

    use_ascii_fallback()
    try:
        argv = sys.argv[1:] if argv is None else list(argv)
        if len(argv) >= 2 and argv[0] == "derive" and ("-h" in argv or "--help" in argv) \
                and not argv[1].startswith("-"):
            sys.stdout.write(layer_help("derive", argv[1]))
            return 0
        args, extra = build_parser().parse_known_args(argv)
        if extra and args.command not in ("derive", "check", "grade"):
            raise UsageError(f"unexpected arguments: {' '.join(extra)}")
        if args.command in COMMANDS:
            return COMMANDS[args.command](args, extra)
        return args.func(args)
    except SymbpError as e:
        print(f"symbp: error: {e}", file=sys.stderr)
        return e.exit_status
    except KeyboardInterrupt as e:  # training says where its checkpoint is
        print(f"symbp: {e or 'interrupted'}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `symbp derive L | head`: the reader left; nothing to report
        sys.stdout = open(os.devnull, "w")
        return 141
    except Exception as e:  # anything else a spec can provoke: one line; SYMBP_DEBUG=1 shows the traceback
        if os.environ.get("SYMBP_DEBUG"):
            raise
        message = " ".join(str(e).split()) or "no message"
        print(f"symbp: error: {type(e).__name__}: {message} (SYMBP_DEBUG=1 shows where)", file=sys.stderr)
        return EXIT_USAGE
