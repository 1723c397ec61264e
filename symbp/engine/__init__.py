"""The symbolic engine: a layer's spec in, its gradients out, all in SymPy.

In pipeline order: ``reverse`` derives the chunked gradients (one per
binding), ``simplify`` turns them into fused closed forms over the saved
tensors, ``prove`` shows the two agree for every size, and ``derivation``
ties the stages together behind :func:`symbp.derive`. ``algebra`` holds the
reduction arithmetic the stages share, ``tidy`` the choice of the cheapest
equal form, and ``trace`` the record of each rewrite that the teaching views
print. Nothing here imports torch.
"""
