"""Run the spec fuzzer for many examples: how many random specs derive, generate and match.

    python benchmarks/fuzz_specs.py --examples 2000 --out fuzz_failures/

Each example is a random spec file (``symbp.fuzz``), run on standard
normal, zero-heavy or tied arguments in turn, and compared in float64 with
autograd of the independent reference evaluator. Prints pass / refused /
fail counts and one line per distinct failure (the shortest spec that shows
it), and writes every failing spec, with what went wrong, to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from symbp.fileio import write_atomic  # noqa: E402
from symbp.fuzz import check_source, random_draw, spec_source  # noqa: E402

EDGES = ("none", "zeros", "ties")


def signature(outcome) -> str:
    """What kind of failure: the stage and the error with sizes and names blanked out."""
    if outcome.stage != "compare":
        return f"{outcome.stage}: " + re.sub(r"'[^']*'", "'…'", outcome.message)
    kinds = set()
    for part in outcome.message.split("; "):
        label = part.split(" d")[0] if not part.startswith("forward") else "forward"
        what = "non-finite" if "non-finite" in part else ("shape" if "shape" in part else "wrong value")
        kinds.add(f"{label}: {what}")
    return "compare: " + ", ".join(sorted(kinds))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--examples", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="fuzz_failures", help="folder for failing specs")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    counts: Counter = Counter()
    refusals: Counter = Counter()
    smallest: dict = {}
    per_sig: Counter = Counter()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.seed, args.seed + args.examples):
            source = spec_source(random_draw(random.Random(i)))
            edge = EDGES[i % len(EDGES)]
            work = Path(tmp) / f"e{i}"
            work.mkdir()
            outcome = check_source(source, work, seed=i, edge=edge)
            counts[outcome.status] += 1
            if outcome.status == "refused":
                refusals[outcome.message] += 1
            if outcome.status != "fail":
                continue
            sig = signature(outcome)
            per_sig[sig] += 1
            write_atomic(out / f"fail_{i:06d}.py", source)
            write_atomic(out / f"fail_{i:06d}.json", json.dumps(
                {"example": i, "edge": edge, "stage": outcome.stage, "message": outcome.message,
                 "signature": sig}, indent=1) + "\n")
            if sig not in smallest or len(source) < len(smallest[sig][1]):
                smallest[sig] = (i, source, edge)
    took = time.perf_counter() - start
    total = sum(counts.values())
    print(f"{total} random specs in {took:.0f} s: {counts['pass']} passed, {counts['refused']} refused "
          f"(one-line SpecError), {counts['fail']} failed")
    for msg, k in refusals.most_common():
        print(f"  refused {k:5d}  {msg}")
    for sig, k in per_sig.most_common():
        i, _, edge = smallest[sig]
        print(f"  failed  {k:5d}  {sig}   (shortest: fail_{i:06d}.py, edge={edge})")
    summary = {"examples": total, "seed": args.seed, "passed": counts["pass"], "refused": counts["refused"],
               "failed": counts["fail"], "failures": {s: k for s, k in per_sig.most_common()},
               "shortest": {s: f"fail_{v[0]:06d}.py" for s, v in smallest.items()}}
    write_atomic(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    return 1 if counts["fail"] else 0


if __name__ == "__main__":
    sys.exit(main())
