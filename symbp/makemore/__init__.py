"""The makemore character MLP (embedding, linear, BatchNorm, tanh, linear,
cross-entropy), trained with symbp's generated backward or with autograd."""
