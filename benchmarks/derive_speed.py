"""Wall time of `symbp derive LAYER` as a user runs it (a fresh process each time), against importing SymPy.

    python benchmarks/derive_speed.py [--repeat 5] [--layers batchnorm cross_entropy ...]

Each round times, back to back in fresh processes, ``python -c "import sympy"``
and ``symbp derive LAYER`` for every layer, twice: ``cold`` with the cache off
(``SYMBP_CACHE_DIR=off``: SymPy is imported and the layer derived and
explained), and ``warm`` with a cache that an untimed first run filled (what
a user sees the second time, and after any change symbp's output does not
depend on). The medians over rounds are reported, with each ratio to the SymPy
import measured in the same run (target: at most 1.3x), and whether torch was
imported (it must not be: deriving is pure SymPy).
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


def timed(code: str, cache: str):
    env = dict(os.environ, SYMBP_CACHE_DIR=cache)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True,
                       env=env)
    return time.perf_counter() - t0, r.stdout.strip()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--layers", nargs="*", default=["batchnorm", "cross_entropy"])
    args = ap.parse_args()
    out = os.path.join(tempfile.mkdtemp(), "derivation.txt")
    warm = tempfile.mkdtemp(prefix="symbp-bench-cache-")
    codes = {"import sympy": (IMPORT_SYMPY, "off")}
    for layer in args.layers:
        probe = PROBE.format(layer=layer, out=out)
        codes[f"{layer} cold"] = (probe, "off")
        codes[f"{layer} warm"] = (probe, warm)
        timed(probe, warm)  # fills the cache; not timed
    times = {name: [] for name in codes}
    flags = {}
    for _ in range(args.repeat):
        for name, (code, cache) in codes.items():
            t, flags[name] = timed(code, cache)
            times[name].append(t)
    base = statistics.median(times["import sympy"])
    print(f"{'command':20s} {'median s':>9s} {'min s':>7s} {'max s':>7s} {'/ import sympy':>15s}  torch")
    for name, ts in times.items():
        print(f"{name:20s} {statistics.median(ts):9.3f} {min(ts):7.3f} {max(ts):7.3f}"
              f" {statistics.median(ts) / base:14.2f}x  {flags[name] or '-'}")


if __name__ == "__main__":
    main()
