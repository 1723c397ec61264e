"""Grading a learner's hand-written backward against the derivation.

``reader`` (with ``expressions``, ``torch_calls``, ``values``) reads the answer's torch
code; ``world`` and ``exact`` are the independent exact test; ``grader`` gives the
verdicts, ``diagnoses`` names mistakes, ``precision`` adds notes, ``report`` shows them.
"""

from symbp.grading.grader import Grader, grade
from symbp.grading.values import GradeError
from symbp.grading.world import World

__all__ = ["GradeError", "Grader", "World", "grade"]
