"""Checks that share no code with what they check: ``reference`` evaluates a
spec directly in torch, ``check`` compares generated modules with it and with
autograd, ``fuzz`` draws random specs to run through the whole pipeline."""
