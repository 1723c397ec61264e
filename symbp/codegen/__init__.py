"""From derived gradients to PyTorch source: ``lower`` prints SymPy as torch
calls, ``render`` fills the Jinja templates in ``templates/`` and writes
``generated/`` atomically."""
