"""Grading a learner's hand-written backward against the derivation."""

from symbp.grading.grader import GradeError, Grader, World, grade

__all__ = ["GradeError", "Grader", "World", "grade"]
