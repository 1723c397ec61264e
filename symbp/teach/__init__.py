"""Derivations for people: ``explain`` builds the step-by-step lesson from the
engine's own rules, ``report`` prints it as text, Markdown, LaTeX or Jupyter HTML."""
