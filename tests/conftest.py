"""Shared test helpers: one comparison with the independent reference, driven by the layer registry."""

from pathlib import Path

import pytest
import torch

from symbp.codegen.render import variants
from symbp.layers import builtin_names
from symbp.verify.reference import reference_gradients

REPO = Path(__file__).resolve().parents[1]
NAMES_TXT = REPO.parent / "shared" / "data" / "names.txt"

VARIANTS = [v for name in builtin_names() for v in variants(name)]


def rel_err(got, want, floor=1e-300) -> float:
    """max |got - want| / max |want|, with ``floor`` as the smallest denominator."""
    scale = want.abs().max().item() if want.numel() else 0.0
    return (got - want).abs().max().item() / max(scale, floor)


def assert_matches_reference(module, args, rtol=1e-10, grad_output=None):
    """Every fused and chunked gradient equals autograd through ``symbp.verify.reference``.

    The reference evaluates the spec's bindings in torch and shares no code
    with the lowering or the generated forward, so a wrong forward cannot
    vouch for its own backward. It holds every tensor with one dim per axis,
    so callers keep the product of the axis sizes small.

    Errors are relative to each tensor's largest entry; a gradient that is zero
    in exact arithmetic (the max-shift's ``dlogit_maxes``) is only rounding
    noise, so the denominator never drops below 1e-4 of the largest gradient.
    """
    spec = module.SPEC
    if grad_output is None:
        out, _ = module.forward(*args)
        grad_output = (torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(0))
                       if out.dim() else torch.ones((), dtype=out.dtype))
    ref, dout, _ = reference_gradients(spec, args, grad_output)
    # the scale of the backward pass: its largest gradient, or the incoming gradient where every
    # gradient is zero in exact arithmetic (a unit-norm row of length one), so rounding is judged fairly
    floor = 1e-4 * max([v.abs().max().item() for v in ref.values() if v.numel()] + [dout.abs().max().item()])
    _, ctx = module.forward(*args)
    chunked = module.backward_chunked(ctx, grad_output)
    assert chunked, "no chunked gradients"
    for name, got in chunked.items():
        assert name in ref, f"the reference has no gradient for {name}"
        assert got.shape == ref[name].shape, name
        assert rel_err(got, ref[name], floor) <= rtol, (name, rel_err(got, ref[name], floor))
    output = "d" + spec.output_tensor.name
    assert not set(ref) - set(chunked) - {output}, f"missing from backward_chunked: {set(ref) - set(chunked)}"
    fused = module.backward(ctx, grad_output)
    diff = spec.differentiable
    assert len(fused) == len(diff)
    for t, got in zip(diff, fused):
        want = ref["d" + t.name]
        assert got.shape == want.shape, t.name
        assert rel_err(got, want, floor) <= rtol, (t.name, rel_err(got, want, floor))


@pytest.fixture(scope="session")
def generated_modules():
    """Each registered variant's module, rendered from the current spec."""
    from symbp.verify.check import load_generated

    return {v.module: load_generated(v.layer, v.options) for v in VARIANTS}


def pytest_configure(config):
    import os
    import tempfile

    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    # the generate cache of this run lives in a fresh folder, never the user's
    os.environ["SYMBP_CACHE_DIR"] = tempfile.mkdtemp(prefix="symbp-test-cache-")
