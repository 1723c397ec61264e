"""The ``symbp`` command line.

    symbp list
    symbp derive LAYER [--format text|latex|markdown] [-o FILE] [--OPTION VALUE ...]
    symbp generate [LAYER ...] [-o OUTDIR] [--check]
    symbp check LAYER [--batch N] [--dtype float32|float64] [--OPTION VALUE ...]
    symbp grade LAYER ANSWER.py [--OPTION VALUE ...]
    symbp train [-i FILE] [--steps N] [--backward generated|autograd] [--out DIR] [--resume] ...
    symbp sample [--out DIR] [-n 20]

A layer's own options (``--eps 1e-3``, ``--variance biased``) follow the
layer name. Every failure the user can cause is one line on stderr and exit
status 2; nothing is written unless all of it could be produced.
"""

from __future__ import annotations

import argparse
import sys

EXIT_USAGE = 2


class UsageError(Exception):
    """A one-line message for the user; exit status 2."""


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


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="symbp", description="Derive, simplify, typeset and generate backward passes.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("list", help="name the known layers")
    d = sub.add_parser("derive", help="print a layer's derivation",
                       description="Print the forward bindings, the chunked backward and the fused "
                                   "closed form. Layer options follow the layer: --eps 1e-3.")
    d.add_argument("layer", help="a built-in layer name or a spec file path")
    d.add_argument("--format", default="text", help="text, latex or markdown")
    d.add_argument("-o", "--output", help="write to FILE instead of standard output")
    g = sub.add_parser("generate", help="write the generated modules and derivations",
                       description="Render templates/*.j2 into generated/ (or OUTDIR). With --check, "
                                   "write nothing and exit 1 with a diff if anything is stale.")
    g.add_argument("layers", nargs="*", help="layer names or spec files (default: every built-in layer)")
    g.add_argument("-o", "--outdir", help="output folder (default: the generated/ package)")
    g.add_argument("--check", action="store_true", help="compare instead of writing")
    g.add_argument("--no-cache", action="store_true",
                   help="derive every layer again instead of reusing results for unchanged specs")
    c = sub.add_parser("check", help="compare a layer's generated backward with autograd",
                       description="Print name | exact | approximate | maxdiff for every gradient "
                                   "against torch autograd on a random batch; exit 1 on a mismatch.")
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
    from symbp.cli_train import add_parsers  # train, sample (imports torch only when run)

    add_parsers(sub)
    return p


def cmd_list(args, extra) -> int:
    from symbp import list_layers

    layers = list_layers()
    width = max(map(len, layers))
    for name, desc in layers.items():
        print(f"{name.ljust(width)}  {desc}")
    return 0


FORMATS = {"text": "text", "latex": "latex", "markdown": "markdown"}


def cmd_derive(args, extra) -> int:
    if args.format not in FORMATS:
        raise UsageError(f"unknown format {args.format!r}; choose text, latex or markdown")
    from symbp.derivation import derive

    d = derive(args.layer, **_layer_options(extra))
    content = getattr(d, FORMATS[args.format])()
    _emit(content, args.output)
    return 0


def default_outdir():
    from pathlib import Path

    return Path(__file__).resolve().parent.parent / "generated"


def cmd_generate(args, extra) -> int:
    from symbp import render
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

    from symbp.check import compare, load_generated, random_arguments

    module = load_generated(args.layer, _layer_options(extra))
    g = torch.Generator().manual_seed(args.seed)
    dtype = getattr(torch, args.dtype)
    rows = compare(module, random_arguments(module.SPEC, {"n": args.batch}, dtype, g))
    for r in rows:
        print(r.line())
    bad = [r.name for r in rows if not r.approximate]
    print(f"{len(rows) - len(bad)} of {len(rows)} gradients match autograd ({args.dtype})")
    from symbp.derivation import derive
    from symbp.prove import prove

    proofs = prove(derive(args.layer, **_layer_options(extra)))
    for name, ok in proofs.items():
        print(f"proof: fused {name} {'equals' if ok else 'was NOT shown equal to'} the chunked chain "
              f"(SymPy, exact, for every batch size)")
    return 1 if bad or not all(proofs.values()) else 0


def cmd_grade(args, extra) -> int:
    from pathlib import Path

    from symbp.grade import GradeError, grade

    path = Path(args.answer)
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read {args.answer}: {getattr(e, 'strerror', None) or e}") from None
    try:
        report = grade(args.layer, source, filename=path.name, **_layer_options(extra))
    except GradeError as e:
        raise UsageError(str(e)) from None
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


def main(argv=None) -> int:
    from symbp.data import TrainError
    from symbp.fileio import OutputError
    from symbp.layers import LayerError
    from symbp.spec import SpecError

    try:
        args, extra = build_parser().parse_known_args(argv)
        if extra and args.command not in ("derive", "check", "grade"):
            raise UsageError(f"unexpected arguments: {' '.join(extra)}")
        if args.command in COMMANDS:
            return COMMANDS[args.command](args, extra)
        return args.func(args)
    except (UsageError, LayerError, SpecError, OutputError, TrainError) as e:
        print(f"symbp: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("symbp: interrupted", file=sys.stderr)
        return 130
