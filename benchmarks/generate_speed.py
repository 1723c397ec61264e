"""`symbp generate` for every built-in layer, cold (no cache) and warm (cached), side by side.

    python benchmarks/generate_speed.py [--repeat 3]

Each run is a fresh process writing into a temporary folder with its own
cache, so the cold figure includes deriving every layer and the warm one only
hashing the specs and reading the cache. Target: under 10 s.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time


def run(outdir, cache, no_cache):
    env = dict(os.environ, SYMBP_CACHE_DIR=cache)
    args = [sys.executable, "-m", "symbp", "generate", "-o", outdir] + (["--no-cache"] if no_cache else [])
    t0 = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True, env=env)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    cold, warm = [], []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as out, tempfile.TemporaryDirectory() as cache:
            cold.append(run(out, cache, no_cache=False))  # empty cache: derives everything
            warm.append(run(out, cache, no_cache=False))
    c, w = statistics.median(cold), statistics.median(warm)
    print(f"symbp generate, all built-in layers: cold {c:.2f} s, warm (cached) {w:.2f} s, ratio {w / c:.2f}")


if __name__ == "__main__":
    main()
