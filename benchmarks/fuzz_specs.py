"""Run the spec fuzzer for many examples: how many random specs derive, generate and match.

    python benchmarks/fuzz_specs.py --examples 2000 --out fuzz_failures/

Each example is a random spec file (``symbp.verify.fuzz``), run on standard
normal, zero-heavy or tied arguments in turn, and compared in float64 with
autograd of the independent reference evaluator. Prints pass / refused /
fail counts and one line per distinct failure (the shortest spec that shows
it), and writes every failing spec, with what went wrong, and the first spec
of each distinct refusal to ``--out``.
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
from symbp.verify.fuzz import check_source, random_draw, spec_source  # noqa: E402

EDGES = ("none", "zeros", "ties", "intdata")


def signature(outcome, source="", edge="") -> str:
    """What kind of failure: the stage and the error with sizes and names blanked out.

    A wrong value on tied arguments of a spec with a ``Max`` is told apart
    (the known tie-splitting difference), so that other wrong values stand out.
    """
    if outcome.stage != "compare":
        msg = re.sub(r"'[^']*'", "'…'", outcome.message)
        msg = re.sub(r"(solving|generators) .*? (when|\[)", r"\1 … \2", msg)
        return f"{outcome.stage}: " + re.sub(r"\b[a-z]\d\b|\d+", "#", msg)
    kinds = set()
    for part in outcome.message.split("; "):
        label = part.split(" d")[0] if not part.startswith("forward") else "forward"
        what = "non-finite" if "non-finite" in part else ("shape" if "shape" in part else "wrong value")
        kinds.add(f"{label}: {what}")
    ties = " (ties, spec has Max)" if edge == "ties" and "Max(" in source else ""
    return "compare: " + ", ".join(sorted(kinds)) + ties


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--examples", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="fuzz_failures", help="folder for failing specs")
    p.add_argument("--minutes", type=float, default=0, help="stop after this long (0: run every example)")
    p.add_argument("--no-mixed-sums", action="store_true",
                   help="never reduce a sum of terms with different axes (to look past that known bug)")
    p.add_argument("--timeout", type=float, default=20.0,
                   help="seconds per example before it counts as a hang")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tally = Tally()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.seed, args.seed + args.examples):
            if args.minutes and time.perf_counter() - start > 60 * args.minutes:
                break
            source = spec_source(random_draw(random.Random(i)), mixed_sums=not args.no_mixed_sums)
            edge = EDGES[i % len(EDGES)]
            work = Path(tmp) / f"e{i}"
            work.mkdir()
            outcome = check_source(source, work, seed=i, edge=edge, timeout=args.timeout)
            tally.add(i, source, edge, outcome, out)
            if sum(tally.counts.values()) % 50 == 0:
                tally.write(out, args, time.perf_counter() - start)
    tally.write(out, args, time.perf_counter() - start)
    tally.print(time.perf_counter() - start)
    return 1 if tally.counts["fail"] else 0


class Tally:
    """Counts by outcome, refusals by message, failures by signature with the shortest example of each."""

    def __init__(self):
        self.counts: Counter = Counter()
        self.refusals: Counter = Counter()
        self.failures: Counter = Counter()
        self.shortest: dict = {}

    def add(self, i, source, edge, outcome, out):
        self.counts[outcome.status] += 1
        if outcome.status == "refused":
            self.refusals[outcome.message] += 1
            if self.refusals[outcome.message] == 1:  # the first spec of each refusal, to judge it
                write_atomic(out / f"refused_{i:06d}.py", f"# {outcome.message}\n" + source)
        if outcome.status != "fail":
            return
        sig = signature(outcome, source, edge)
        self.failures[sig] += 1
        write_atomic(out / f"fail_{i:06d}.py", source)
        write_atomic(out / f"fail_{i:06d}.json", json.dumps(
            {"example": i, "edge": edge, "stage": outcome.stage, "message": outcome.message,
             "signature": sig}, indent=1) + "\n")
        if sig not in self.shortest or len(source) < len(self.shortest[sig][1]):
            self.shortest[sig] = (i, source, edge)

    def write(self, out, args, took):
        summary = {"examples": sum(self.counts.values()), "seed": args.seed,
                   "mixed_sums": not args.no_mixed_sums, "seconds": round(took),
                   "passed": self.counts["pass"], "refused": self.counts["refused"],
                   "failed": self.counts["fail"], "refusals": dict(self.refusals.most_common()),
                   "failures": dict(self.failures.most_common()),
                   "shortest": {s: f"fail_{v[0]:06d}.py" for s, v in self.shortest.items()}}
        write_atomic(out / "summary.json", json.dumps(summary, indent=1) + "\n")

    def print(self, took):
        c = self.counts
        print(f"{sum(c.values())} random specs in {took:.0f} s: {c['pass']} passed, {c['refused']} refused "
              f"(one-line SpecError), {c['fail']} failed")
        for msg, k in self.refusals.most_common():
            print(f"  refused {k:5d}  {msg}")
        for sig, k in self.failures.most_common():
            i, _, edge = self.shortest[sig]
            print(f"  failed  {k:5d}  {sig}   (shortest: fail_{i:06d}.py, edge={edge})")


if __name__ == "__main__":
    sys.exit(main())
