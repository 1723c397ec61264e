"""From derived gradients to PyTorch source: ``lower`` (with ``contractions``) prints SymPy as
torch calls, ``statements`` turns rows of gradients into named lines, ``render`` fills the Jinja
templates in ``templates/``, and ``layout`` breaks long lines and parses the module before
``generated/`` is written atomically."""
