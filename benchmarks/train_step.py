"""Time one training step of the makemore MLP: generated vs autograd backward, eager and compiled.

    python benchmarks/train_step.py [--batches 32 4096] [--rounds 7] [--seconds 0.3] [--no-memory]
                                    [--no-compile] [--threads N]

Four variants, all on ``symbp.makemore.model.forward`` (the one definition of the MLP):

* ``generated``: ``make_step('generated')``, symbp's emitted backward passes, no autograd;
* ``autograd``: ``make_step('autograd')``, torch autograd, the baseline of the eager ratios;
* ``generated compiled``: the generated step through ``torch.compile(fullgraph=True)``;
* ``autograd compiled``: the forward through ``torch.compile`` as a user compiles a model
  (AOTAutograd compiles its backward), the baseline of the compiled ratios.

A step is forward + backward on one minibatch (the SGD update, the same for
all, is left out). Before timing, each variant's loss and gradients are
checked against eager autograd with ``torch.allclose``; a mismatch stops the
benchmark, since timing a wrong answer means nothing. Compilation happens
during that check, so it is not timed.

Timing is interleaved in one process: each round runs every variant back to
back (in a rotating order) for about ``--seconds``, and the per-step time
reported is the median over rounds. Interleaving exposes all variants to the
same machine state (frequency, other load), which a variant-after-variant run
does not. torch's thread count is left at its default unless ``--threads``.

One more line, ``floor``, is not a step: it is the work every backward has
to do whatever its code, timed the same way (the forward and loss without
autograd, the softmax, the four matmuls of the two linear layers'
gradients and the embedding's scatter-add). Its ratio is the best any
backward could reach here: where a target ratio is below it, only a faster
forward or matmul gets there.

Peak memory is measured in a fresh process per variant and batch size,
because torch's CPU allocator has no peak counter and ``tracemalloc`` does
not see torch's allocations. The child builds the parameters and batch, runs
the step 3 times to warm up (lazy initialisation and compilation are not
per-step cost), then resets the kernel's resident-set high-water mark (``echo 5 >
/proc/self/clear_refs``, Linux), runs 20 more steps and reports ``VmHWM``
minus the ``VmRSS`` at the reset: how far resident memory rose above the
steady state while stepping (activations, gradients, autograd's graph), in
MiB. It is honest but coarse: it counts whole pages, and memory the
allocator keeps cached counts only if it was not already resident, so the
child runs with glibc told to return large freed blocks to the kernel at
once (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``): resident
memory then follows the live tensors. Figures under about 1 MiB are noise.
(A process-wide ``ru_maxrss`` would be useless here: the peak while importing
torch is higher than any step's.)
Where ``/proc`` cannot do this, memory is reported as n/a.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from symbp.makemore import model
from symbp.makemore.data import TrainError
from symbp.makemore.model import PARAM_NAMES, init_params
from symbp.makemore.steps import AutogradStep, make_step

VOCAB, BLOCK = 27, 3
FLOOR = "floor"


def floor(params: dict, Xb, Yb):
    """The work any backward does: forward, loss, softmax, the linear layers' four matmuls and
    the embedding's scatter-add (on stand-in tensors of the right shapes)."""
    with torch.inference_mode():
        logits, (embcat, _, bnraw, h) = model.forward(params, Xb)
        loss = torch.nn.functional.cross_entropy(logits, Yb)
        dlogits = torch.softmax(logits, 1)
        demb = bnraw @ params["W1"].T
        C = params["C"]
        dC = C.new_zeros(C.shape).index_add_(0, Xb.reshape(-1), demb.view(-1, C.shape[1]))
        return loss, (dlogits @ params["W2"].T, h.T @ dlogits, embcat.T @ bnraw, dC)


def variants(compiled: bool = True) -> dict:
    """``{name: step}``; the generated steps only where they are installed."""
    out = {}
    for mode in (False, True) if compiled else (False,):
        suffix = " compiled" if mode else ""
        try:
            out["generated" + suffix] = make_step("generated", compile=mode)
        except TrainError as e:
            print(f"note: skipping the generated step: {e}", file=sys.stderr)
        out["autograd" + suffix] = make_step("autograd", compile=mode)
    return out


def baseline(name: str) -> str:
    """The variant a ratio is taken against: autograd in the same mode."""
    return "autograd compiled" if name.endswith("compiled") else "autograd"


def problem(batch: int, seed: int = 0):
    """The default model (n_embd 10, n_hidden 200, vocabulary 27, block 3) and a random batch."""
    params = init_params(VOCAB, BLOCK)
    g = torch.Generator().manual_seed(seed)
    return params, torch.randint(0, VOCAB, (batch, BLOCK), generator=g), torch.randint(0, VOCAB, (batch,),
                                                                                        generator=g)


def check(steps: dict, batch: int) -> None:
    params, Xb, Yb = problem(batch)
    ref_loss, ref = AutogradStep()(params, Xb, Yb)
    for name, step in steps.items():
        loss, grads = step(params, Xb, Yb)
        bad = [k for k in PARAM_NAMES if not torch.allclose(grads[k], ref[k], rtol=1e-4, atol=1e-6)]
        if not torch.allclose(loss, ref_loss) or bad:
            sys.exit(f"{name} disagrees with autograd at batch {batch}: loss {loss.item()} vs "
                     f"{ref_loss.item()}, gradients {bad or 'ok'}")
        diff = max((grads[k] - ref[k]).abs().max().item() for k in PARAM_NAMES)
        print(f"  {name:18s} matches autograd at batch {batch} (max |diff| {diff:.1e})")


class _CountOps(TorchDispatchMode):
    """Counts the aten operators that reach the kernels (views and the backward's included)."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def op_counts(steps: dict, batch: int) -> dict:
    """Aten operators per eager step: the cost that dominates at small batches, free of timing noise."""
    params, Xb, Yb = problem(batch)
    out = {}
    for name, step in steps.items():
        if name.endswith("compiled"):
            continue
        with _CountOps() as counter:
            step(params, Xb, Yb)
        out[name] = counter.count
    return out


def time_steps(steps: dict, batch: int, rounds: int, seconds: float) -> dict:
    """Median seconds per step of each variant, timed interleaved over ``rounds`` rounds."""
    params, Xb, Yb = problem(batch)
    reps = {}
    for name, step in steps.items():  # warm up, and size each variant's run to about `seconds`
        for _ in range(3):
            step(params, Xb, Yb)
        t0 = time.perf_counter()
        step(params, Xb, Yb)
        reps[name] = max(3, int(seconds / max(time.perf_counter() - t0, 1e-6)))
    times = {name: [] for name in steps}
    names = list(steps)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            step = steps[name]
            t0 = time.perf_counter()
            for _ in range(reps[name]):
                step(params, Xb, Yb)
            times[name].append((time.perf_counter() - t0) / reps[name])
    return {name: statistics.median(ts) for name, ts in times.items()}


def step_memory_mib(variant: str, batch: int, threads_args=()):
    """How far a fresh process's resident memory rises while ``variant`` steps; None if unmeasurable."""
    # glibc hands large freed blocks back to the kernel at once with these settings, so
    # resident memory follows live tensors instead of what the allocator keeps cached
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    r = subprocess.run([sys.executable, __file__, "--child", variant, "--batches", str(batch),
                        *threads_args],
                       capture_output=True, text=True, check=True, env=env)
    value = r.stdout.split()[-1]
    return None if value == "n/a" else float(value) / 1024  # /proc reports KiB


def _proc_status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(field + ":"))


def child(variant: str, batch: int) -> None:
    params, Xb, Yb = problem(batch)
    step = variants(compiled=variant.endswith("compiled"))[variant]
    for _ in range(3):
        step(params, Xb, Yb)
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset VmHWM to the current VmRSS
        start = _proc_status_kib("VmRSS")
    except OSError:
        print("n/a")
        return
    for _ in range(20):
        step(params, Xb, Yb)
    print(_proc_status_kib("VmHWM") - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[32, 4096])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seconds", type=float, default=0.3, help="time per variant per round")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    ap.add_argument("--no-compile", action="store_true", help="eager variants only")
    ap.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's own)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    threads_args = ()
    if args.threads:
        torch.set_num_threads(args.threads)
        threads_args = ("--threads", str(args.threads))
    if args.child:
        return child(args.child, args.batches[0])

    steps = variants(compiled=not args.no_compile)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    for batch in args.batches:
        check(steps, batch)
    ops = op_counts(steps, args.batches[0])
    print("aten operators per eager step: " + ", ".join(f"{k} {v}" for k, v in ops.items()))
    for batch in args.batches:
        med = time_steps({**steps, FLOOR: floor}, batch, args.rounds, args.seconds)
        mem = {} if args.no_memory else {name: step_memory_mib(name, batch, threads_args) for name in steps}
        print(f"\nbatch {batch}: median of {args.rounds} interleaved rounds"
              + ("" if args.no_memory else "; peak MiB = rise of resident memory while stepping"))
        header = f"  {'variant':18s} {'us/step':>9s} {'/ autograd':>11s} {'/ autograd same mode':>21s}"
        print(header + (f" {'peak MiB':>9s}" if mem else ""))
        for name, t in med.items():
            line = (f"  {name:18s} {t * 1e6:9.1f} {t / med['autograd']:10.2f}x"
                    f" {t / med[baseline(name)]:20.2f}x")
            if mem and name != FLOOR:
                line += f" {mem[name]:9.1f}" if mem[name] is not None else f" {'n/a':>9s}"
            print(line)


if __name__ == "__main__":
    main()
