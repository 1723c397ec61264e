"""Generated fused backward vs autograd of the seeds' chunked forward, side by side.

    python benchmarks/layer_backward.py [--repeat 200] [--batches 32 4096]

For BatchNorm (d = 200, the seeds' hidden size) and cross-entropy (c = 27) at
each batch size, both backward passes are timed in one process, alternating
call by call so that machine noise hits both alike. Autograd is timed as
``torch.autograd.grad`` over a retained graph of the seeds' chunked forward;
the generated side is ``backward(ctx, grad)``. Ratios below 1 mean the
generated code is faster. Also reported: forward + backward together.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

import generated.batchnorm as bn
import generated.cross_entropy as ce

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from seeds_reference import seeds_batchnorm, seeds_cross_entropy  # noqa: E402  (the tests' reference)


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def race(a, b, repeat):
    """Median seconds of ``a`` and ``b``, called alternately after a warm-up."""
    for _ in range(10):
        a(), b()
    ta, tb = [], []
    for _ in range(repeat):
        ta.append(timed(a))
        tb.append(timed(b))
    return statistics.median(ta), statistics.median(tb)


def cases(n, g):
    d, c = 200, 27
    x = torch.randn(n, d, generator=g)
    gain = 1 + 0.1 * torch.randn(1, d, generator=g)
    bias = 0.1 * torch.randn(1, d, generator=g)
    dy = torch.randn(n, d, generator=g) / n
    logits = torch.randn(n, c, generator=g)
    y = torch.randint(0, c, (n,), generator=g)
    yield "batchnorm", (x, gain, bias), dy, lambda *a: seeds_batchnorm(*a)[0], bn
    yield "cross_entropy", (logits, y), None, lambda *a: seeds_cross_entropy(*a)[0], ce


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=200)
    ap.add_argument("--batches", type=int, nargs="*", default=[32, 4096])
    args = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, CPU")
    print(f"{'layer':14s} {'batch':>6s} {'autograd bw us':>15s} {'generated bw us':>16s} {'ratio':>6s}"
          f" {'autograd fw+bw':>15s} {'generated fw+bw':>16s} {'ratio':>6s}")
    for n in args.batches:
        for name, inputs, dout, seeds_forward, mod in cases(n, g):
            (ta, tg), (fa, fg) = measure(inputs, dout, seeds_forward, mod, args.repeat)
            print(f"{name:14s} {n:6d} {ta * 1e6:15.1f} {tg * 1e6:16.1f} {tg / ta:6.2f}"
                  f" {fa * 1e6:15.1f} {fg * 1e6:16.1f} {fg / fa:6.2f}")


def measure(inputs, dout, seeds_forward, mod, repeat):
    """((autograd bw, generated bw), (autograd fw+bw, generated fw+bw)) median seconds."""
    leaves = [t.clone().requires_grad_(t.is_floating_point()) for t in inputs]
    diff = [t for t in leaves if t.requires_grad]
    out = seeds_forward(*leaves)
    grad = torch.ones_like(out) if dout is None else dout
    _, ctx = mod.forward(*inputs, chunked=False)

    def auto_bw():
        torch.autograd.grad(out, diff, grad, retain_graph=True)

    def gen_bw():
        mod.backward(ctx, grad)

    def auto_all():
        torch.autograd.grad(seeds_forward(*leaves), diff, grad)

    def gen_all():
        with torch.no_grad():
            mod.backward(mod.forward(*inputs, chunked=False)[1], grad)

    return race(auto_bw, gen_bw, repeat), race(auto_all, gen_all, repeat)


if __name__ == "__main__":
    main()
