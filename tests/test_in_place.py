"""Fused backward passes that update tensors in place stay right where that is risky.

A generated backward may update a fresh result of its own in place
(``torch.addcmul(dy, a, b).add_(c)``) and, with ``donate=True``, compute in
the incoming gradient itself. Both are checked against the independent
reference (``symbp.verify.reference``, autograd through an evaluator that
shares no code with the lowering): with a donated gradient and every choice of
``needs``, and under ``torch.func.vmap`` with one tensor batched at a time
(vmap refuses to update an unbatched tensor in place from a batched one).
"""

import pytest
import torch

from conftest import REPO, VARIANTS, rel_err
from symbp.verify.check import load_generated, random_arguments
from symbp.verify.reference import reference_gradients

# vmap falls back to a loop for scatter_ (one-hot classes), and says so: the answer is still checked
pytestmark = pytest.mark.filterwarnings("ignore:There is a performance drop")
SPECS = sorted(p.name for p in (REPO / "tests" / "specs").glob("*.py"))
CASES = [("layer", v) for v in VARIANTS] + [("spec", name) for name in SPECS]


def module_of(kind, what):
    if kind == "layer":
        return load_generated(what.layer, what.options)
    return load_generated(str(REPO / "tests" / "specs" / what))


def arguments(spec, seed=0):
    """Small float64 arguments (the reference holds a dim per axis), sizes 3, 4, 5, ..."""
    sizes = {a.name: 3 + i for i, a in enumerate(spec.axis_list)}
    return random_arguments(spec, sizes, torch.float64, torch.Generator().manual_seed(seed))


def check(got, want, floor, label):
    assert got is not None, label
    assert got.shape == want.shape, (label, got.shape, want.shape)
    assert rel_err(got, want, floor) <= 1e-10, (label, rel_err(got, want, floor))


def case_id(case):
    kind, what = case
    return what.module if kind == "layer" else what[:-3]


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_a_donated_gradient_gives_the_same_gradients(case):
    module = module_of(*case)
    spec = module.SPEC
    args = arguments(spec)
    out, ctx = module.forward(*args)
    dy = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(1))
    ref, _, _ = reference_gradients(spec, args, dy)
    floor = 1e-6 * max([v.abs().max().item() for v in ref.values() if v.numel()] + [1.0])
    names = ["d" + t.name for t in spec.differentiable]
    kept = dy.clone()
    for got, name in zip(module.backward(ctx, dy), names):
        check(got, ref[name], floor, name)
    module.backward_chunked(ctx, dy)
    assert torch.equal(dy, kept), "the backward changed a gradient that was not donated"
    choices = [None] + [tuple(i == k for i in range(len(names))) for k in range(len(names))]
    for needs in choices:
        grads = module.backward(ctx, dy.clone(), needs=needs, donate=True)
        for k, (got, name) in enumerate(zip(grads, names)):
            if needs is None or needs[k]:
                check(got, ref[name], floor, f"{name} donated, needs={needs}")


def _vmap_cases():
    for case in CASES:
        module = module_of(*case)
        floats = [t.name for t in module.SPEC.arguments if t.role != "classes"]
        for name in floats + ["<grad>"]:
            yield pytest.param(case, name, id=f"{case_id(case)}-{name}")


@pytest.mark.parametrize("case,batched", list(_vmap_cases()))
def test_function_under_vmap_with_one_tensor_batched(case, batched):
    """``vmap(vjp(...))`` over ``Function`` with just ``batched`` (an argument, or the incoming
    gradient) batched: each batch element's gradients match the reference."""
    module = module_of(*case)
    spec = module.SPEC
    args = arguments(spec)
    out, _ = module.forward(*args)
    g = torch.Generator().manual_seed(3)
    w = torch.randn(out.shape, dtype=out.dtype, generator=g)
    names = [t.name for t in spec.arguments]
    diff = [k for k, t in enumerate(spec.arguments) if t.differentiable]
    B = 2
    if batched == "<grad>":
        stacks, dims = args, [None] * len(args)
        ws, w_dim = torch.stack([w, -2 * w]), 0
    else:
        k = names.index(batched)
        stacks = list(args)
        stacks[k] = torch.stack([args[k], args[k] + 0.25 * torch.randn(args[k].shape, dtype=args[k].dtype,
                                                                          generator=g)])
        dims = [0 if i == k else None for i in range(len(args))]
        ws, w_dim = w, None

    def pullback(*a):  # vjp, not grad: grad's own cotangent would be batched whatever is
        *a, w_ = a

        def f(*d):
            full = list(a)
            for k, v in zip(diff, d):
                full[k] = v
            return module.Function.apply(*full)

        return torch.func.vjp(f, *[a[k] for k in diff])[1](w_)

    grads = torch.func.vmap(pullback, in_dims=(*dims, w_dim))(*stacks, ws)
    for b in range(B):
        args_b = [s[b] if d == 0 else s for s, d in zip(stacks, dims)]
        w_b = ws[b] if w_dim == 0 else ws
        ref, _, _ = reference_gradients(spec, args_b, w_b)
        floor = 1e-6 * max([v.abs().max().item() for v in ref.values() if v.numel()] + [1.0])
        for k, got in zip(diff, grads):
            check(got[b], ref["d" + names[k]], floor, f"d{names[k]}[{b}]")
