"""Wall time of `symbp derive LAYER` as a user runs it (a fresh process each time), against importing SymPy.

    python benchmarks/derive_speed.py [--repeat 5] [--layers batchnorm cross_entropy ...]

Each round times, back to back in fresh processes, ``python -c "import sympy"``
and ``symbp derive LAYER`` for every layer; the medians over rounds are
reported, with each layer's ratio to the SymPy import measured in the same
run (target: at most 1.3x), and whether torch was imported (it must not be:
deriving is pure SymPy).
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROBE = ("import sys; sys.argv = ['symbp', 'derive', {layer!r}, '-o', {out!r}];"
         "from symbp.cli import main; rc = main(sys.argv[1:]);"
         "print('torch-imported' if 'torch' in sys.modules else 'torch-free')")
IMPORT_SYMPY = "import sympy"


def timed(code: str):
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    return time.perf_counter() - t0, r.stdout.strip()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--layers", nargs="*", default=["batchnorm", "cross_entropy"])
    args = ap.parse_args()
    out = os.path.join(tempfile.mkdtemp(), "derivation.txt")
    codes = {"import sympy": IMPORT_SYMPY}
    codes.update({layer: PROBE.format(layer=layer, out=out) for layer in args.layers})
    times = {name: [] for name in codes}
    flags = {}
    for _ in range(args.repeat):
        for name, code in codes.items():
            t, flags[name] = timed(code)
            times[name].append(t)
    base = statistics.median(times["import sympy"])
    print(f"{'command':15s} {'median s':>9s} {'min s':>7s} {'max s':>7s} {'/ import sympy':>15s}  torch")
    for name, ts in times.items():
        print(f"{name:15s} {statistics.median(ts):9.3f} {min(ts):7.3f} {max(ts):7.3f}"
              f" {statistics.median(ts) / base:14.2f}x  {flags[name] or '-'}")


if __name__ == "__main__":
    main()
