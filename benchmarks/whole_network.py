"""The whole-network derivation against the per-layer composition the training step uses.

    python benchmarks/whole_network.py

Derives ``benchmarks/specs/mlp_whole.py`` (the makemore MLP as one spec) and
prints, per parameter, the size of its fused closed form (operations and
reductions, SymPy's ``count_ops``) next to the sum of the same figures over
the per-layer fused forms the generated training step chains together, the
derivation time, and whether the whole-network form lowers to torch code.
"""

import time
from pathlib import Path

import sympy as sp

from symbp import derive
from symbp.errors import SymbpError
from symbp.spec import Sum

SPEC = Path(__file__).resolve().parent / "specs" / "mlp_whole.py"
LAYERS = ("embedding", "linear", "batchnorm", "tanh", "cross_entropy")


def size(expr) -> tuple:
    return sp.count_ops(expr), sum(1 for n in sp.preorder_traversal(expr) if isinstance(n, Sum))


def main():
    t0 = time.perf_counter()
    whole = derive(str(SPEC))
    fused = whole.fused_gradients
    derive_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    per_layer = {name: derive(name).fused_gradients for name in LAYERS}
    layers_s = time.perf_counter() - t0
    ops = sum(size(e)[0] for grads in per_layer.values() for e in grads.values())
    sums = sum(size(e)[1] for grads in per_layer.values() for e in grads.values())
    print(f"derive: whole network {derive_s:.1f} s; the five layers {layers_s:.1f} s")
    print(f"{'gradient':10s} {'ops':>6s} {'sums':>6s}")
    for name, expr in fused.items():
        o, s = size(expr)
        print(f"{name:10s} {o:6d} {s:6d}")
    total = [sum(size(e)[k] for e in fused.values()) for k in (0, 1)]
    print(f"{'whole':10s} {total[0]:6d} {total[1]:6d}")
    print(f"{'per layer':10s} {ops:6d} {sums:6d}  (every fused gradient of the five layers)")
    from symbp.codegen.render import Variant, render_variant

    try:
        render_variant(Variant("mlp_whole", str(SPEC), {}), "mlp_whole.py", cache=False)
        print("lowering: the whole-network module renders")
    except SymbpError as e:
        print(f"lowering: refused: {str(e)[:160]}")


if __name__ == "__main__":
    main()
