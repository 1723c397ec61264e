"""symbp: derive, simplify, typeset and generate neural-network backward passes.

    >>> import symbp
    >>> d = symbp.derive("batchnorm")
    >>> d.fused_gradients["dhprebn"]

Importing symbp does not import torch; only the generated modules need it.
"""

__version__ = "0.1.0"


def derive(layer: str, **options):
    """Derive ``layer`` (a built-in name or a spec file path) with ``options``."""
    from symbp.engine.derivation import derive as _derive

    return _derive(layer, **options)


def grade(layer: str, source: str, **options):
    """Grade a learner's backward ``source`` (``dNAME = <torch expression>`` lines) for ``layer``.

    Returns a report: ``str(report)`` is one ``dNAME: correct`` / ``dNAME: wrong: ...`` line
    per gradient; in Jupyter it shows the learner's expression, the derived one and the difference.
    """
    from symbp.grading import grade as _grade

    return _grade(layer, source, **options)


def list_layers() -> dict:
    """``{name: one-line description}`` of the built-in layers."""
    from symbp.layers import builtin_names, describe_builtin

    return {n: describe_builtin(n) for n in builtin_names()}
