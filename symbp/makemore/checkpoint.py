"""The training checkpoint: what it holds, written atomically, read without unpickling code.

A checkpoint is a dict of tensors, lists, numbers and strings (``torch.load``
with ``weights_only=True`` reads it), with a version, the model sizes, the
vocabulary and a hash of the data, so that a resume can refuse what would not
continue the same run.
"""

from __future__ import annotations

from pathlib import Path

import torch

from symbp.fileio import atomic_file
from symbp.makemore.data import TrainError
from symbp.makemore.model import DEFAULT_SEED, sample

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_VERSION = 1
#: The model sizes a checkpoint must share with the configuration it is resumed under.
SIZE_KEYS = ("vocab_size", "block_size", "n_embd", "n_hidden")


class CheckpointError(TrainError):
    """A checkpoint that is missing, unreadable, or from another vocabulary, data set or model size."""


def load_checkpoint(path) -> dict:
    """A checkpoint written by ``train``, read without unpickling arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}; train first (symbp train --out {path.parent})")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file: pickle, zip and torch errors alike
        raise CheckpointError(f"cannot read checkpoint {path}: {str(e).splitlines()[0]}") from None
    if not isinstance(ckpt, dict) or ckpt.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path} is not a symbp training checkpoint")
    return ckpt


def sample_from_checkpoint(out, n: int = 20, seed: int = DEFAULT_SEED) -> list[str]:
    """``n`` names from the model that ``train`` left in folder ``out``."""
    path = Path(out) / CHECKPOINT
    ckpt = load_checkpoint(path)
    if ckpt["bn_stats"] is None:
        raise CheckpointError(f"{path} is from an unfinished run (step {ckpt['step']:,} of "
                              f"{ckpt['config']['steps']:,}); finish it with: "
                              f"symbp train --resume --out {out}")
    if n < 0:
        raise TrainError(f"the number of names must not be negative, not {n}")
    return sample(ckpt["params"], ckpt["bn_stats"], ckpt["itos"], ckpt["sizes"]["block_size"], n, seed)


def check_compatible(ckpt, sizes, itos, data_sha, config, path) -> None:
    """Refuse to resume what would not continue the same run."""
    for key in SIZE_KEYS:
        if ckpt["sizes"][key] != sizes[key]:
            raise CheckpointError(f"{path} has {key} {ckpt['sizes'][key]}, but this run has {sizes[key]}"
                                  + ("" if key == "vocab_size" else f"; pass --{key.replace('_', '-')} "
                                     f"{ckpt['sizes'][key]} or another --out"))
    if ckpt["itos"] != itos or ckpt["data_sha256"] != data_sha:
        raise CheckpointError(f"{path} was trained on other data than {config.input}; "
                              f"resume with -i {ckpt['config']['input']} or choose another --out")
    if ckpt["step"] > config.steps:
        raise CheckpointError(f"{path} is at step {ckpt['step']:,}, past --steps {config.steps:,}")


def save_checkpoint(path: Path, obj: dict) -> None:
    """``torch.save`` through a temporary file and a rename: a checkpoint is never half-written."""
    with atomic_file(path) as fh:
        torch.save(obj, fh)
