"""Generated backward modules against torch autograd, for every registered layer."""

import importlib
import math
import re

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import VARIANTS, assert_matches_reference, rel_err
from seeds_reference import seeds_batchnorm, seeds_cross_entropy
from symbp.layers import load
from symbp.verify.check import random_arguments

SIZE_RANGES = {"n": (2, 512), "c": (2, 100), "v": (2, 100),
               "b": (1, 6), "t": (1, 24), "s": (1, 24), "h": (1, 32)}
# any other axis: features 1..300
# the reference holds every tensor over all axes, so the product of the sizes stays below this
# (one axis can still reach its range's top when the others are small)
REFERENCE_ELEMENTS = 2**16


def draw_sizes(data, spec, ranges) -> dict:
    """Sizes from ``ranges`` in axis order, their product capped at ``REFERENCE_ELEMENTS``."""
    names = [a.name for a in spec.axis_list]
    lows = [ranges.get(a, (1, 300))[0] for a in names]
    sizes, left = {}, REFERENCE_ELEMENTS
    for k, a in enumerate(names):
        low, high = ranges.get(a, (1, 300))
        room = left // math.prod(lows[k + 1:])
        sizes[a] = data.draw(st.integers(low, max(low, min(high, room))), label=a)
        left //= sizes[a]
    return sizes


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.module)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_float64_matches_reference_over_shapes(variant, data, generated_modules):
    module = generated_modules[variant.module]
    ranges = dict(SIZE_RANGES, **getattr(load(variant.layer).module, "TEST_SIZE_RANGES", {}))
    sizes = draw_sizes(data, module.SPEC, ranges)
    seed = data.draw(st.integers(0, 2**31 - 1), label="seed")
    args = random_arguments(module.SPEC, sizes, torch.float64, torch.Generator().manual_seed(seed))
    assert_matches_reference(module, args, rtol=1e-10)


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.module)
def test_gradcheck_on_function(variant, generated_modules):
    module = generated_modules[variant.module]
    sizes = {a.name: 5 if a.name == "n" else 4 for a in module.SPEC.axis_list}
    args = random_arguments(module.SPEC, sizes, torch.float64, torch.Generator().manual_seed(1))
    roles = [t.role for t in module.SPEC.arguments]
    args = [a.requires_grad_() if role in ("input", "param") else a for a, role in zip(args, roles)]
    assert torch.autograd.gradcheck(module.Function.apply, tuple(args))


def test_every_generated_module_imports():
    """generated/ is a package whose modules import: a broken one fails here, never skips.

    (That the files are what the current specs render is ``test_render``'s byte comparison.)
    """
    package = importlib.import_module("generated")
    assert sorted(package.MODULES) == sorted(v.module for v in VARIANTS)
    for name in package.MODULES:
        module = importlib.import_module(f"generated.{name}")
        for attr in ("forward", "backward", "backward_chunked", "Function"):
            assert callable(getattr(module, attr, None)), (name, attr)


# --- the seeds' own chunked forward, written out by hand, as the reference ---

def seeds_grads(fn, inputs, dout=None):
    leaves = [x.detach().clone().requires_grad_(x.is_floating_point()) for x in inputs]
    out, mids = fn(*leaves)
    for t in mids.values():
        t.retain_grad()
    out.backward(torch.ones_like(out) if dout is None else dout)
    grads = {"d" + k: v.grad for k, v in mids.items()}
    return out, grads, [x.grad for x in leaves]


@pytest.mark.parametrize("bessel", [True, False])
@pytest.mark.parametrize("n, d", [(2, 1), (32, 64), (32, 200), (257, 3)])
def test_batchnorm_against_seeds_forward_float64(bessel, n, d):
    mod = importlib.import_module("generated.batchnorm" if bessel else "generated.batchnorm_biased")
    g = torch.Generator().manual_seed(n * d)
    x = torch.randn(n, d, dtype=torch.float64, generator=g) * 3 + 1
    gain = 1 + 0.1 * torch.randn(1, d, dtype=torch.float64, generator=g)
    bias = 0.1 * torch.randn(1, d, dtype=torch.float64, generator=g)
    dy = torch.randn(n, d, dtype=torch.float64, generator=g)
    out, ref, ref_inputs = seeds_grads(lambda *a: seeds_batchnorm(*a, bessel=bessel), [x, gain, bias], dy)
    got_out, ctx = mod.forward(x, gain, bias)
    assert rel_err(got_out, out.detach()) <= 1e-12
    chunked = mod.backward_chunked(ctx, dy)
    for name, want in ref.items():
        assert rel_err(chunked[name], want) <= 1e-10, name
    for got, want, name in zip(mod.backward(ctx, dy), ref_inputs, ("dhprebn", "dbngain", "dbnbias")):
        assert rel_err(got, want) <= 1e-10, name
        assert rel_err(chunked[name], want) <= 1e-10, name


@pytest.mark.parametrize("n, c", [(2, 2), (32, 27), (500, 100)])
def test_cross_entropy_against_seeds_forward_float64(n, c):
    import generated.cross_entropy as mod

    g = torch.Generator().manual_seed(n + c)
    logits = torch.randn(n, c, dtype=torch.float64, generator=g) * 4
    y = torch.randint(0, c, (n,), generator=g)
    loss, ref, (dlogits, _) = seeds_grads(seeds_cross_entropy, [logits, y])
    got_loss, ctx = mod.forward(logits, y)
    assert abs(got_loss.item() - loss.item()) <= 1e-12 * abs(loss.item())
    dloss = torch.ones_like(got_loss)
    chunked = mod.backward_chunked(ctx, dloss)
    floor = 1e-4 * dlogits.abs().max().item()  # dlogit_maxes is zero up to rounding
    for name, want in ref.items():
        assert rel_err(chunked[name], want, floor) <= 1e-10, name
    assert rel_err(chunked["dlogits"], dlogits) <= 1e-10
    assert rel_err(mod.backward(ctx, dloss)[0], dlogits) <= 1e-10


def test_float32_fused_within_float32_rounding_at_the_seeds_sizes():
    """At the seeds' sizes, in float32, on unscaled upstream gradients, every fused gradient is
    within a few float32 roundings (relative to its largest entry) of autograd through the seeds'
    forward, in float32 and in float64 on the same values. The seeds' maxdiffs (5e-9, 9e-10) are
    absolute at the scale of a mean loss's upstream gradient; this bound does not depend on it.
    """
    import generated.batchnorm as bn
    import generated.cross_entropy as ce

    bound = 8 * torch.finfo(torch.float32).eps  # measured: under 3 eps over 200 draws
    g = torch.Generator().manual_seed(2147483647)
    n, d, c = 32, 64, 27
    logits = torch.randn(n, c, generator=g)
    y = torch.randint(0, c, (n,), generator=g)
    _, ctx = ce.forward(logits, y)
    (got,) = ce.backward(ctx, torch.ones(()))
    assert got.dtype == torch.float32
    _, _, (want32, _) = seeds_grads(seeds_cross_entropy, [logits, y])
    _, _, (want64, _) = seeds_grads(seeds_cross_entropy, [logits.double(), y])
    assert rel_err(got, want32) <= bound, rel_err(got, want32)
    assert rel_err(got.double(), want64) <= bound, rel_err(got.double(), want64)

    x = torch.randn(n, d, generator=g) * 3 + 1
    gain = 1 + 0.1 * torch.randn(1, d, generator=g)
    bias = 0.1 * torch.randn(1, d, generator=g)
    dy = torch.randn(n, d, generator=g)  # unscaled: the bound is relative
    _, ctx = bn.forward(x, gain, bias)
    fused = bn.backward(ctx, dy)
    _, _, want32 = seeds_grads(seeds_batchnorm, [x, gain, bias], dy)
    _, _, want64 = seeds_grads(seeds_batchnorm, [t.double() for t in (x, gain, bias)], dy.double())
    for name, got, w32, w64 in zip(("dhprebn", "dbngain", "dbnbias"), fused, want32, want64):
        assert got.dtype == torch.float32, name
        assert rel_err(got, w32) <= bound, (name, rel_err(got, w32))
        assert rel_err(got.double(), w64) <= bound, (name, rel_err(got.double(), w64))


def test_huge_logits_give_finite_correct_gradients():
    """The fused gradient needs only probs, so it stays finite where probs underflow.

    (The seeds' chunked chain divides by probs and takes log(probs), so its
    loss and intermediate gradients overflow here, exactly as in the seeds.)
    """
    import generated.cross_entropy as ce

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 10, dtype=torch.float64, generator=g) * 1e4
    y = torch.randint(0, 10, (16,), generator=g)
    leaf = logits.clone().requires_grad_()
    torch.nn.functional.cross_entropy(leaf, y).backward()
    loss, ctx = ce.forward(logits, y)
    dlogits = ce.backward(ctx, torch.ones_like(loss))[0]
    assert torch.isfinite(dlogits).all()
    assert torch.allclose(dlogits, leaf.grad, rtol=1e-10, atol=1e-12)
    leaf2 = logits.clone().requires_grad_()
    (dl2,) = torch.autograd.grad(ce.Function.apply(leaf2, y), [leaf2])
    assert torch.isfinite(dl2).all() and torch.allclose(dl2, leaf.grad, rtol=1e-10, atol=1e-12)


def test_constant_feature_column_gives_finite_gradients():
    import generated.batchnorm as bn

    x = torch.randn(32, 5, dtype=torch.float64)
    x[:, 2] = 3.0
    gain, bias = torch.ones(1, 5, dtype=torch.float64), torch.zeros(1, 5, dtype=torch.float64)
    _, ctx = bn.forward(x, gain, bias)
    dy = torch.randn(32, 5, dtype=torch.float64)
    assert all(torch.isfinite(gr).all() for gr in bn.backward(ctx, dy))
    assert all(torch.isfinite(v).all() for v in bn.backward_chunked(ctx, dy).values())


def test_batch_of_one_with_bessel_is_a_clear_error():
    import generated.batchnorm as bn
    import generated.batchnorm_biased as biased

    with pytest.raises(ValueError, match="n - 1 must be positive"):
        bn.forward(torch.randn(1, 4), torch.ones(1, 4), torch.zeros(1, 4))
    with pytest.raises(ValueError, match="n - 1 must be positive"):
        bn.Function.apply(torch.randn(1, 4), torch.ones(1, 4), torch.zeros(1, 4))
    out, _ = biased.forward(torch.randn(1, 4), torch.ones(1, 4), torch.zeros(1, 4))
    assert torch.isfinite(out).all()


def test_functions_inside_an_autograd_graph():
    import generated.batchnorm as bn
    import generated.cross_entropy as ce

    g = torch.Generator().manual_seed(5)
    x = torch.randn(64, 20, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(20, 12, dtype=torch.float64, generator=g, requires_grad=True)
    gain = torch.ones(1, 12, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(1, 12, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 12, (64,), generator=g)
    loss = ce.Function.apply(torch.tanh(bn.Function.apply(x @ w, gain, bias)), y)
    got = torch.autograd.grad(loss, [x, w, gain, bias])
    ref_loss = torch.nn.functional.cross_entropy(torch.tanh(seeds_batchnorm(x @ w, gain, bias)[0]), y)
    want = torch.autograd.grad(ref_loss, [x, w, gain, bias])
    for a, b in zip(got, want):
        assert rel_err(a, b) <= 1e-10


GENERATED_PY = sorted((importlib.import_module("generated").__path__[0] + "/" + v.module + ".py")
                      for v in VARIANTS)
ONE_HOT_BUILDERS = {"one_hot", "scatter", "scatter_"}
CONTRACTIONS = {"matmul", "mm", "bmm", "einsum", "tensordot"}


def dense_one_hot_products(src) -> list:
    """Source of every contraction (``@``, matmul, einsum, ...) with a one-hot built inside an operand."""
    import ast

    def builds_one_hot(node):
        return any(isinstance(c, ast.Call) and getattr(c.func, "attr", getattr(c.func, "id", None))
                   in ONE_HOT_BUILDERS for c in ast.walk(node))

    found = []
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult):
            operands = [node.left, node.right]
        elif (isinstance(node, ast.Call)
              and getattr(node.func, "attr", getattr(node.func, "id", None)) in CONTRACTIONS):
            operands = [*node.args, getattr(node.func, "value", node.func)]
        else:
            continue
        if any(builds_one_hot(o) for o in operands):
            found.append(ast.unparse(node))
    return found


def test_the_dense_one_hot_check_can_fail():
    assert dense_one_hot_products("dW = torch.nn.functional.one_hot(X, v).to(dy.dtype).T @ dy")
    assert dense_one_hot_products("d = dy.new_zeros((n, c)).scatter_(-1, y.unsqueeze(-1), 1.0) @ W")
    assert dense_one_hot_products("d = torch.einsum('nc,cd->nd', F.one_hot(y, c).double(), W)")
    assert dense_one_hot_products("d = probs.new_zeros((n, c)).scatter_(-1, y[:, None], 1.0).matmul(W)")
    assert not dense_one_hot_products("d = (probs - dy.new_zeros((n, c)).scatter_(-1, y[:, None], 1.0)) / n")
    assert not dense_one_hot_products("dW = x.T @ dy")


@pytest.mark.parametrize("path", GENERATED_PY, ids=lambda p: p.rsplit("/", 1)[1])
def test_generated_code_quality(path):
    src = open(path, encoding="utf-8").read()
    assert src.startswith("# @generated by symbp from templates/")
    assert any("Do not edit" in line for line in src.splitlines()[1:3])
    import ast
    import io
    import tokenize

    names = [t.string for t in tokenize.generate_tokens(io.StringIO(src).readline) if t.type == tokenize.NAME]
    # one_hot: a class index becomes a gather, an index_add_ or a scatter in the float dtype, never
    # F.one_hot (int64, and its range check reads the indices on the host)
    for banned in ("float64", "float32", "double", "cpu", "cuda", "item", "range", "tolist", "numpy",
                   "one_hot"):
        assert banned not in names, banned
    loops = [n for n in ast.walk(ast.parse(src))
             if isinstance(n, (ast.For, ast.While, ast.ListComp, ast.GeneratorExp, ast.DictComp))]
    assert not loops, "no Python loops in generated code"
    assert not dense_one_hot_products(src), "a one-hot in a matmul: use gather, indexing or index_add_"
    # every gradient line says which forward binding it differentiates or that it is fused
    backward_part = src[src.index("def backward("):src.index("\nclass ")]
    lines = backward_part.splitlines()
    for k, line in enumerate(lines):
        if re.match(r"\s+d\w+ = ", line) and "ctx[" not in line and not line.endswith("= None"):
            note, j = line, k  # a long line has its comment on the lines above
            while "  # " not in line and j > 0 and lines[j - 1].strip().startswith("#"):
                j -= 1
                note = lines[j] + note
            assert "# " in note and ("through " in note or "fused" in note), line


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.module)
def test_lean_forward_keeps_exactly_what_the_fused_backward_reads(variant, generated_modules):
    module = generated_modules[variant.module]
    args = random_arguments(module.SPEC, {"n": 9}, torch.float64, torch.Generator().manual_seed(4))
    out_full, ctx_full = module.forward(*args)
    out_lean, ctx_lean = module.forward(*args, chunked=False)
    assert torch.equal(out_full, out_lean)
    assert set(ctx_lean) <= set(ctx_full)
    dout = torch.ones_like(out_full)
    # enough: the fused backward on the lean context is the one on the full context
    for a, b in zip(module.backward(ctx_full, dout), module.backward(ctx_lean, dout), strict=True):
        assert torch.equal(a, b)
    # nothing more: without any one entry the fused backward cannot run
    for key in ctx_lean:
        with pytest.raises(KeyError):
            module.backward({k: v for k, v in ctx_lean.items() if k != key}, dout)


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.module)
def test_function_saves_exactly_its_arguments_and_output(variant, generated_modules):
    """Autograd keeps the tensor arguments and the output, nothing else: the backward recomputes."""
    module = generated_modules[variant.module]
    args = random_arguments(module.SPEC, {"n": 9}, torch.float64, torch.Generator().manual_seed(5))
    args = [a.requires_grad_() if t.differentiable else a for a, t in zip(args, module.SPEC.arguments)]
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = module.Function.apply(*args)
    want = [*args, out]
    assert len(saved) == len(want), [tuple(t.shape) for t in saved]
    for got, w in zip(saved, want):
        assert got.data_ptr() == w.data_ptr() and got.shape == w.shape and got.dtype == w.dtype
    dout = torch.randn_like(out)
    grads = torch.autograd.grad(out, [a for a in args if a.requires_grad], dout)
    _, ctx = module.forward(*[a.detach() for a in args], chunked=False)
    for got, want in zip(grads, module.backward(ctx, dout), strict=True):
        assert torch.equal(got, want)
