"""Wall time of `symbp derive LAYER` as a user runs it (a fresh process each time).

    python benchmarks/derive_speed.py [--repeat 5]

Prints the median and the spread per layer, and whether torch was imported
(it must not be: deriving is pure SymPy). Target: batchnorm under 1.5 s on a
2-core machine.
"""

import argparse
import statistics
import subprocess
import sys
import time

PROBE = ("import sys; sys.argv = ['symbp', 'derive', {layer!r}, '-o', {out!r}];"
         "from symbp.cli import main; rc = main(sys.argv[1:]);"
         "print('torch-imported' if 'torch' in sys.modules else 'torch-free')")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--layers", nargs="*", default=["batchnorm", "cross_entropy"])
    args = ap.parse_args()
    import os
    import tempfile

    out = os.path.join(tempfile.mkdtemp(), "derivation.txt")
    print(f"{'layer':15s} {'median s':>9s} {'min s':>7s} {'max s':>7s}  torch")
    for layer in args.layers:
        times, flag = [], ""
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            r = subprocess.run([sys.executable, "-c", PROBE.format(layer=layer, out=out)],
                               capture_output=True, text=True, check=True)
            times.append(time.perf_counter() - t0)
            flag = r.stdout.strip()
        print(f"{layer:15s} {statistics.median(times):9.3f} {min(times):7.3f} {max(times):7.3f}  {flag}")


if __name__ == "__main__":
    main()
