"""Derivations for people: ``explain`` builds the step-by-step lesson (``lesson``) from the
engine's own rules (``chain_rule``, ``fused_steps``); the views print it as plain text
(``text``), LaTeX (``latex``), Markdown (``markdown``) and a graph (``graph``), all through
the printers in ``printers``."""
