"""Time whole `symbp train` runs: generated vs autograd backward, eager and `--compile`, same CLI.

    python benchmarks/train_run.py -i names.txt [--steps 15000] [--rounds 3] [--no-compile] [--threads N]

Each run is the command a user types (``python -m symbp train -i FILE
--steps N --backward B [--compile] --quiet``) in a fresh process, with a new
``--out`` folder; the four variants are run interleaved, ``--rounds`` times
each, and the medians are reported. ``train s`` is ``train_seconds`` from the
run's ``metrics.json`` (the training loop, compilation included, BatchNorm
calibration included; evaluation and start-up excluded), ``compile s`` the
part of it spent compiling (``compile_seconds``); ``wall s`` is the whole
process. Ratios are against the eager autograd run, and the compiled
runs also against their eager twin. The losses of each run are printed too:
generated and autograd must agree to about four decimals.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run(input_file: str, steps: int, backward: str, compile: bool, out: Path, threads) -> dict:
    cmd = [sys.executable, "-m", "symbp", "train", "-i", input_file, "--steps", str(steps),
           "--backward", backward, "--out", str(out), "--quiet"] + (["--compile"] if compile else [])
    env = dict(os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {}))
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, env=env)
    wall = time.perf_counter() - t0
    metrics = json.loads((out / "metrics.json").read_text())
    return {"train": metrics["train_seconds"], "wall": wall, "loss": metrics["loss"],
            "compile": metrics.get("compile_seconds", 0.0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-i", "--input-file", required=True, help="names.txt")
    ap.add_argument("--steps", type=int, default=15_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-compile", action="store_true", help="eager runs only")
    ap.add_argument("--threads", type=int, help="OMP_NUM_THREADS for the runs (default: torch's own)")
    args = ap.parse_args()
    input_file = str(Path(args.input_file).resolve())
    variants = [(b, c) for c in ((False,) if args.no_compile else (False, True))
                for b in ("generated", "autograd")]
    results = {v: [] for v in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for backward, compile in variants[r % len(variants):] + variants[:r % len(variants)]:
                out = Path(tmp) / f"{r}-{backward}-{int(compile)}"
                results[(backward, compile)].append(run(input_file, args.steps, backward, compile, out,
                                                        args.threads))
    med = {v: {key: statistics.median(x[key] for x in rs) for key in ("train", "wall", "compile")}
           for v, rs in results.items()}
    base = med[("autograd", False)]["train"]
    print(f"symbp train --steps {args.steps:,} (batch 32), median of {args.rounds} interleaved rounds"
          + (f", OMP_NUM_THREADS={args.threads}" if args.threads else ""))
    print(f"  {'variant':20s} {'train s':>8s} {'compile s':>10s} {'wall s':>7s} {'/ autograd':>11s}"
          f" {'/ same, eager':>14s}  losses train / val / test")
    for (backward, compile), m in med.items():
        name = backward + (" --compile" if compile else "")
        twin = med[(backward, False)]["train"]
        loss = results[(backward, compile)][0]["loss"]
        print(f"  {name:20s} {m['train']:8.2f} {m['compile']:10.2f} {m['wall']:7.2f}"
              f" {m['train'] / base:10.2f}x {m['train'] / twin:13.2f}x"
              f"  {loss['train']:.4f} / {loss['val']:.4f} / {loss['test']:.4f}")


if __name__ == "__main__":
    main()
