"""The symbolic proof that fused equals chunked: holds for every layer, and can fail."""

import pytest

import symbp
from symbp.engine.prove import prove, residual
from symbp.engine.simplify import Inliner
from symbp.layers import builtin_names


@pytest.mark.parametrize("layer", builtin_names())
def test_every_layer_is_proven(layer):
    proofs = prove(symbp.derive(layer))
    assert proofs and all(proofs.values()), proofs


@pytest.mark.parametrize("layer, name", [("batchnorm", "hprebn"), ("cross_entropy", "logits"),
                                         ("batchnorm", "bngain")])
def test_a_wrong_closed_form_is_not_proven(layer, name):
    d = symbp.derive(layer)
    chain = Inliner(d.chunked).full(d.chunked.gradient(name))
    fused = d.fused.gradients[name]
    n = d.spec.axis_list[0]
    for wrong in (fused * (n - 1) / n, fused + d.spec.adjoint(d.spec.output_tensor.name) / 1000):
        assert residual(d.spec, chain, wrong) != 0
    # not vacuous: were fused 0, so would be the first wrong form, and one of the two asserts fails
    assert residual(d.spec, chain, fused) == 0
