"""``symbp train`` and ``symbp sample``: the makemore MLP from the command line.

    symbp train [-i FILE] [--steps N] [--backward generated|autograd] [--compile] [--out DIR] [--resume] ...
    symbp sample [--out DIR] [-n 20] [--seed S]

``add_parsers`` adds both to the main parser's subcommands; ``symbp.cli.main``
runs them and turns their errors into exit statuses (``symbp.errors``). Ctrl-C
saves a checkpoint first.

Importing this module does not import torch, so ``symbp derive`` stays fast.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

DEFAULT_OUT = "runs/mlp"

#: Options a resumed run takes from its checkpoint unless given again: (flag, config field, type, help).
TRAIN_OPTIONS = (
    (("-i", "--input-file"), "input", str, "words to train on, one per line (default: ./names.txt, "
                                           "else makemore's names.txt, downloaded once)"),
    (("--steps",), "steps", int, "optimisation steps (default 200000)"),
    (("--batch-size",), "batch_size", int, "examples per step, at least 2 (default 32)"),
    (("--lr",), "lr", float, "learning rate; a tenth of it from halfway (default 0.1)"),
    (("--seed",), "seed", int, "seed of the initial parameters and the minibatches (default 2147483647)"),
    (("--device",), "device", str, "cpu or cuda (default cpu)"),
    (("--n-hidden",), "n_hidden", int, "hidden units (default 200)"),
    (("--n-embd",), "n_embd", int, "embedding size per character (default 10)"),
    (("--block-size",), "block_size", int, "characters of context (default 3)"),
    (("--backward",), "backward", str, "generated (symbp's code) or autograd (default generated)"),
    (("--checkpoint-every",), "checkpoint_every", int, "steps between checkpoints (default 10000)"),
)


def add_parsers(subparsers) -> None:
    """Add ``train`` and ``sample`` to ``subparsers`` (from ``ArgumentParser.add_subparsers``)."""
    t = subparsers.add_parser(
        "train", help="train the makemore MLP",
        description="Train makemore's MLP (embedding, linear, BatchNorm, tanh, linear) with plain SGD "
                    "and print the train/val/test losses. Ctrl-C saves a checkpoint; --resume continues it.")
    shown = {"backward": "{generated,autograd}", "device": "{cpu,cuda}"}  # choices in the usage line
    for flags, dest, type_, help_ in TRAIN_OPTIONS:
        t.add_argument(*flags, dest=dest, type=type_, default=None, help=help_, metavar=shown.get(dest))
    t.add_argument("--out", default=DEFAULT_OUT, help=f"folder for checkpoint, metrics and plot "
                                                      f"(default {DEFAULT_OUT})")
    t.add_argument("--resume", action="store_true",
                   help="continue the run in --out; options not given again come from its checkpoint")
    t.add_argument("--quiet", action="store_true", help="no progress bar or notes, only the losses")
    t.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="run the training step through torch.compile (needs a C compiler on the CPU; "
                        "compiling takes a minute, then each step is faster; default off)")
    t.set_defaults(func=cmd_train)

    s = subparsers.add_parser("sample", help="print names from a trained model",
                              description="Print names drawn from the model that `symbp train` left "
                                          "in --out.")
    s.add_argument("--out", default=DEFAULT_OUT, help=f"the training folder (default {DEFAULT_OUT})")
    s.add_argument("-n", type=int, default=20, help="how many names (default 20)")
    s.add_argument("--seed", type=int, default=None, help="sampling seed (default 2147483647)")
    s.set_defaults(func=cmd_sample)


def config_from_args(args):
    """The ``TrainConfig`` for ``args``; on ``--resume``, unset options come from the checkpoint."""
    from symbp.makemore.checkpoint import CHECKPOINT, load_checkpoint
    from symbp.makemore.train import TrainConfig

    given = {dest: getattr(args, dest) for _, dest, _, _ in TRAIN_OPTIONS if getattr(args, dest) is not None}
    if getattr(args, "compile", None) is not None:
        given["compile"] = args.compile
    base = TrainConfig()
    if args.resume:
        saved = load_checkpoint(Path(args.out) / CHECKPOINT)["config"]
        fields = {f.name for f in dataclasses.fields(TrainConfig)}
        base = TrainConfig(**{k: v for k, v in saved.items() if k in fields})
    return dataclasses.replace(base, **given, out=args.out, resume=args.resume, quiet=args.quiet)


def cmd_train(args) -> int:
    from symbp.makemore.train import train

    metrics = train(config_from_args(args))
    for split in ("train", "val", "test"):
        print(f"{split} {metrics['loss'][split]:.4f}")
    return 0


def cmd_sample(args) -> int:
    from symbp.makemore.checkpoint import sample_from_checkpoint
    from symbp.makemore.model import DEFAULT_SEED

    for name in sample_from_checkpoint(args.out, args.n, DEFAULT_SEED if args.seed is None else args.seed):
        print(name)
    return 0
