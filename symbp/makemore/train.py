"""Train the makemore MLP with plain SGD, checkpointing so that a stopped run can be resumed exactly.

The schedule is the seeds': 200,000 steps of batch 32, learning rate 0.1 and
then a tenth of it from halfway. One ``torch.Generator`` seeded with the seed
draws the initial parameters and then every minibatch, as in the seeds, and
its state is saved in each checkpoint: a run stopped at any step and resumed
ends with exactly the parameters of a run that was never stopped.

Ctrl-C is taken at the next step boundary (a second Ctrl-C stops at once and
keeps the last periodic checkpoint), so a checkpoint never holds a
half-applied update. A NaN or infinite loss stops training and keeps the last
good checkpoint: losses are checked once per block of ``BLOCK_STEPS`` steps
(and blocks end on checkpoint steps), so the loop never waits on the device
inside a block, and no checkpoint is written after a bad step.

Per step the loop makes one training-step call and one fused SGD update
(``torch._foreach_add_``); minibatch indices are drawn a block at a time
(the same numbers as one draw per step).

Files in the output folder: ``checkpoint.pt`` (loadable with
``torch.load(weights_only=True)``: tensors, lists, dicts, numbers and strings
only), ``metrics.json`` and ``loss.png``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path

import torch

from symbp.errors import EXIT_FAILED
from symbp.fileio import write_atomic
from symbp.makemore.checkpoint import (
    CHECKPOINT,
    CHECKPOINT_VERSION,
    CheckpointError,
    check_compatible,
    load_checkpoint,
    save_checkpoint,
)
from symbp.makemore.data import TrainError, build_vocab, load_words, resolve_input, split
from symbp.makemore.model import (
    BACKWARDS,
    DEFAULT_SEED,
    PARAM_NAMES,
    calibrate,
    count_params,
    init_params,
    split_loss,
)
from symbp.makemore.steps import make_step

__all__ = ["TrainConfig", "TrainError", "CheckpointError", "TrainingError", "TrainingInterrupted",
           "train", "load_checkpoint", "CHECKPOINT", "METRICS", "PLOT"]

METRICS, PLOT = "metrics.json", "loss.png"
#: Steps per point of the loss curve, as in the seeds' plot.
CURVE_CHUNK = 1000
#: Steps whose minibatch indices are drawn in one call, and whose losses are checked in one host sync.
BLOCK_STEPS = 100


class TrainingError(TrainError):
    """Training diverged (NaN or infinite loss); the last good checkpoint is kept."""

    exit_status = EXIT_FAILED


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training. ``step`` steps are done; ``saved`` says if a checkpoint holds them."""

    def __init__(self, message: str, step: int, saved: bool):
        super().__init__(message)
        self.step, self.saved = step, saved


@dataclasses.dataclass
class TrainConfig:
    """Everything that defines a run. ``lr`` drops to ``lr/10`` at step ``steps // 2``."""

    input: str | None = None
    steps: int = 200_000
    batch_size: int = 32
    lr: float = 0.1
    seed: int = DEFAULT_SEED
    device: str = "cpu"
    n_hidden: int = 200
    n_embd: int = 10
    block_size: int = 3
    out: str = "runs/mlp"
    resume: bool = False
    backward: str = "generated"
    checkpoint_every: int = 10_000
    quiet: bool = False
    compile: bool = False

    def validate(self) -> None:
        for name in ("steps", "n_hidden", "n_embd", "block_size", "checkpoint_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise TrainError(f"{name.replace('_', '-')} must be a positive whole number, not {value!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 2:
            raise TrainError(f"batch size must be at least 2 (BatchNorm with Bessel's correction divides "
                             f"by n-1), not {self.batch_size!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise TrainError(f"the learning rate must be a positive number, not {self.lr!r}")
        if not isinstance(self.compile, bool):
            raise TrainError(f"compile must be true or false, not {self.compile!r}")
        if self.backward not in BACKWARDS:
            raise TrainError(f"unknown backward {self.backward!r}; choose {' or '.join(BACKWARDS)}")
        self.torch_device()

    def torch_device(self) -> torch.device:
        try:
            device = torch.device(self.device)
        except RuntimeError:
            raise TrainError(f"unknown device {self.device!r}; try cpu or cuda") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise TrainError(f"device {self.device!r} is not available here; use --device cpu")
        return device

    def lr_at(self, step: int) -> float:
        return self.lr if step < self.steps // 2 else self.lr / 10


def train(config: TrainConfig, callback=None, log=None) -> dict:
    """Run (or resume) training and evaluate; returns the metrics also written to ``metrics.json``.

    ``callback(step, loss)``, if given, is called after each completed step
    (``step`` counts the steps done); raising ``KeyboardInterrupt`` from it
    acts like Ctrl-C there, which is how tests stop a run at a chosen step.
    ``log`` receives notes for the user (default: stderr, silenced by ``quiet``).
    """
    t_start = time.perf_counter()
    config.validate()
    log = log or ((lambda msg: None) if config.quiet else functools.partial(print, file=sys.stderr))
    device = config.torch_device()
    step_fn = make_step(config.backward)
    out = Path(config.out)
    ckpt_path = out / CHECKPOINT

    input_path = resolve_input(config.input, log=log)
    words = load_words(input_path)
    data_sha = hashlib.sha256(input_path.read_bytes()).hexdigest()
    stoi, itos = build_vocab(words)
    data = split(words, config.block_size, stoi)
    Xtr, Ytr = (t.to(device) for t in data.train)
    sizes = {"vocab_size": len(itos), "block_size": config.block_size, "n_embd": config.n_embd,
             "n_hidden": config.n_hidden}
    config = dataclasses.replace(config, input=str(input_path.resolve()))

    g = torch.Generator().manual_seed(config.seed)  # on the CPU whatever the device: same draws everywhere
    if config.resume:
        ckpt = load_checkpoint(ckpt_path)
        check_compatible(ckpt, sizes, itos, data_sha, config, ckpt_path)
        params = {k: v.to(device) for k, v in ckpt["params"].items()}
        g.set_state(ckpt["generator"])
        start, losses, trained_s = ckpt["step"], ckpt["losses"].tolist(), ckpt["train_seconds"]
        if start:
            log(f"symbp: resuming {ckpt_path} at step {start:,} of {config.steps:,}")
    else:
        if ckpt_path.exists():
            raise CheckpointError(f"{ckpt_path} already exists; pass --resume to continue that run, "
                                  "or choose another --out")
        params = init_params(sizes["vocab_size"], config.block_size, config.n_embd, config.n_hidden,
                             device=device, generator=g)
        start, losses, trained_s = 0, [], 0.0
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TrainError(f"cannot create output folder {str(out)!r}: {e.strerror}") from None

    def save(step, generator_state, stats=None):
        save_checkpoint(ckpt_path, {
            "version": CHECKPOINT_VERSION, "params": {k: v.cpu() for k, v in params.items()},
            "step": step, "generator": generator_state, "losses": torch.tensor(losses, dtype=torch.float32),
            "train_seconds": trained_s + (time.perf_counter() - t_loop), "config": dataclasses.asdict(config),
            "itos": itos, "sizes": sizes, "data_sha256": data_sha, "bn_stats": stats})

    log(f"symbp: {count_params(params):,} parameters, {Xtr.shape[0]:,} training examples, "
        f"backward {config.backward}" + (", compiled" if config.compile else ""))
    t_loop = time.perf_counter()
    saved_step = start if config.resume else None
    bar = _progress(config, start)
    plist = [params[name] for name in PARAM_NAMES]
    pending = []  # the losses (0-d tensors) of steps done but not yet checked and logged

    def flush():
        """Check and log the pending losses: one host sync per block of steps, not one per step."""
        if not pending:
            return
        values = torch.stack(pending).tolist()
        pending.clear()
        for i, loss in enumerate(values):
            if not math.isfinite(loss):
                raise TrainingError(f"the loss became {loss} at step {len(losses) + i:,}; "
                                    + _kept(saved_step, ckpt_path) + "; try a smaller --lr")
        losses.extend(math.log10(loss) for loss in values)
        if bar is not None:
            bar.update(len(values))
            bar.set_postfix_str(f"loss {values[-1]:.4f}", refresh=False)

    block = _Block(g, start, config.batch_size, Xtr.shape[0])
    compile_s = 0.0
    try:
        with _sigint_at_step_boundary() as interrupted:
            if config.compile:  # compile now (timed as training), so that a failure is one clear error
                t_compile = time.perf_counter()
                try:
                    step_fn = make_step(config.backward, compile=True)
                    ix = torch.arange(config.batch_size, device=device) % Xtr.shape[0]
                    step_fn(params, Xtr[ix], Ytr[ix])
                except Exception as e:
                    raise TrainError(f"torch.compile failed ({_root_cause(e)}); "
                                     "train without --compile") from None
                compile_s = time.perf_counter() - t_compile
            step = start
            while step < config.steps:
                # a block ends at the next multiple of BLOCK_STEPS or of checkpoint_every
                end = min(config.steps, (step // BLOCK_STEPS + 1) * BLOCK_STEPS,
                          (step // config.checkpoint_every + 1) * config.checkpoint_every)
                ix = block.draw(step, end).to(device)  # (end - step, batch)
                Xblock, Yblock = Xtr[ix], Ytr[ix]
                for i in range(end - step):
                    if interrupted.is_set():
                        raise KeyboardInterrupt
                    loss, grads = step_fn(params, Xblock[i], Yblock[i])
                    # plain SGD, p -= lr * g, as one fused update of every parameter
                    torch._foreach_add_(plist, [grads[name] for name in PARAM_NAMES],
                                        alpha=-config.lr_at(step + i))
                    pending.append(loss)
                    if callback is not None:
                        callback(step + i + 1, loss.item())
                step = end
                flush()
                if step % config.checkpoint_every == 0 and step < config.steps:
                    if not all(torch.isfinite(p).all() for p in params.values()):
                        raise TrainingError(f"the parameters became non-finite by step {step:,}; "
                                            + _kept(saved_step, ckpt_path) + "; try a smaller --lr")
                    save(step, block.state(step))
                    saved_step = step
    except _HardInterrupt:
        resume = f"; continue with: symbp train --resume --out {out}" if saved_step is not None else ""
        raise TrainingInterrupted(f"interrupted; {_kept(saved_step, ckpt_path)}{resume}",
                                  step=saved_step or 0, saved=saved_step is not None) from None
    except KeyboardInterrupt:
        done = len(losses) + len(pending)  # every step that finished has its loss here
        flush()
        save(done, block.state(done))
        raise TrainingInterrupted(f"interrupted at step {done:,} of {config.steps:,}; checkpoint saved to "
                                  f"{ckpt_path}; continue with: symbp train --resume --out {out}",
                                  step=done, saved=True) from None
    finally:
        if bar is not None:
            bar.close()

    stats = calibrate(params, Xtr)
    save(config.steps, g.get_state(), stats)
    trained_s += time.perf_counter() - t_loop
    result = {name: split_loss(params, stats, *(t.to(device) for t in xy))
              for name, xy in (("train", data.train), ("val", data.val), ("test", data.test))}
    metrics = {
        "loss": result, "steps": config.steps, "backward": config.backward,
        "parameters": count_params(params),
        "examples": {k: int(v[0].shape[0]) for k, v in data._asdict().items()},
        "train_seconds": round(trained_s, 3), "wall_seconds": round(time.perf_counter() - t_start, 3),
        "compile_seconds": round(compile_s, 3),
        "config": dataclasses.asdict(config),
    }
    write_atomic(out / METRICS, json.dumps(metrics, indent=2) + "\n")
    _plot(losses, out / PLOT, log)
    return metrics


class _Block:
    """Minibatch indices drawn a block of steps at a time, the same numbers as one draw per step.

    ``torch.randint`` of shape (k, batch) takes the generator through the same
    values as k draws of (batch,), so blocks change nothing in a run; the
    generator's state at any step inside the block (for a checkpoint after
    Ctrl-C) is recovered by redrawing from the block's start.
    """

    def __init__(self, g: torch.Generator, step: int, batch_size: int, n: int):
        self.g, self.batch_size, self.n = g, batch_size, n
        self.start, self.start_state = step, g.get_state()

    def draw(self, start: int, end: int):
        self.start, self.start_state = start, self.g.get_state()
        return torch.randint(0, self.n, (end - start, self.batch_size), generator=self.g)

    def state(self, step: int):
        """The generator's state once the minibatches of all steps before ``step`` are drawn."""
        if step == self.start:
            return self.start_state
        g = torch.Generator().set_state(self.start_state)
        torch.randint(0, self.n, (step - self.start, self.batch_size), generator=g)
        return g.get_state()


def _root_cause(e: BaseException) -> str:
    """The first line of the innermost exception (torch.compile wraps a backend's error in its own)."""
    while getattr(e, "inner_exception", None) or e.__cause__:
        e = getattr(e, "inner_exception", None) or e.__cause__
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__


def _kept(saved_step, path) -> str:
    return (f"the checkpoint of step {saved_step:,} is kept in {path}" if saved_step is not None
            else "no checkpoint was written")


class _HardInterrupt(KeyboardInterrupt):
    """A second Ctrl-C: stop now, mid-step, without saving."""


@contextlib.contextmanager
def _sigint_at_step_boundary():
    """Turn the first Ctrl-C into a flag the loop checks between steps (main thread only)."""
    flag = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag.is_set():
            raise _HardInterrupt
        flag.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def _progress(config: TrainConfig, start: int):
    """A tqdm bar (step, loss, steps/s) on an interactive terminal, a line every few seconds elsewhere."""
    if config.quiet:
        return None
    if not sys.stderr.isatty():
        from symbp.progress import LineProgress

        return LineProgress(config.steps, start)
    from tqdm import tqdm

    return tqdm(total=config.steps, initial=start, unit="step", dynamic_ncols=True, smoothing=0.05)


def _plot(losses: list, path: Path, log) -> None:
    """The seeds' curve: log10 of the loss averaged over chunks of 1,000 steps."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("symbp: matplotlib is not installed; skipping loss.png (pip install matplotlib)")
        return
    chunk = min(CURVE_CHUNK, max(1, len(losses) // 10))  # short runs still get a curve of ~10 points
    t = torch.tensor(losses)
    full = len(losses) // chunk * chunk
    points = t[:full].view(-1, chunk).mean(1).tolist()
    if full < len(losses):
        points.append(t[full:].mean().item())
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot([chunk * (i + 0.5) for i in range(len(points))], points)
    ax.set_xlabel("step")
    ax.set_ylabel(f"log10 loss (mean of {chunk:,} steps)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    try:
        fig.savefig(tmp, dpi=100)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if tmp.exists():
            tmp.unlink()
