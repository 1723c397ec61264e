"""Grade a learner's hand-written backward pass: prove it right, or say what is wrong.

The answer is read (:mod:`symbp.grading.reader`), never run. An answer is correct
when two independent checks agree:

* the symbolic proof (``symbp.engine.prove.residual``): the answer and the derived
  gradient, both taken down to the inputs, reduce to a zero difference for
  every batch size;
* an exact randomised test that shares no code with the engine: the forward
  pass is evaluated at random rational points for several concrete axis sizes
  (``Fraction`` arithmetic; 50-digit ``mpmath`` only where a square root, exp,
  log or tanh leaves the rationals), the true gradient comes from forward-mode
  dual numbers through that evaluation, and the answer is evaluated on the
  same values (:mod:`symbp.grading.world`).

A wrong answer is then diagnosed (:mod:`symbp.grading.diagnoses`); a right one may
get a note (:mod:`symbp.grading.precision`), never a different verdict.
"""

from __future__ import annotations

import sympy as sp

from symbp.engine.derivation import derive
from symbp.engine.prove import residual
from symbp.engine.reverse import grad_name
from symbp.engine.simplify import Inliner
from symbp.grading.diagnoses import Diagnoses, _fmt_number
from symbp.grading.exact import UNDEFINED, close, real
from symbp.grading.precision import float32_notes, precision_notes
from symbp.grading.reader import Reader
from symbp.grading.report import Report, Verdict
from symbp.grading.values import Assignment, GradeError, Poison, dims_str
from symbp.grading.world import critical_values, probe_worlds, worlds_for

PROOF_OPS_LIMIT = 4000  # larger answers are judged by the exact test alone
PROOF_SECONDS = 15  # a reduction still running then is abandoned for the exact test (8 worlds)


class Grader(Diagnoses):
    """Compares each answered gradient with symbp's derivation and the exact evaluator."""

    def __init__(self, layer: str, options: dict):
        self.layer = layer
        self.options = options
        self.d = derive(layer, **options)
        self.spec = self.d.spec
        self.inliner = Inliner(self.d.chunked)
        self._worlds: dict = {}
        self._alternatives: dict = {}
        self.adjoints = {sym: name for name, sym in self.d.chunked.adjoints.items()}
        self._rewrites = None

    def worlds(self, dout_one: bool, count: int = 3, spec=None):
        spec = spec or self.spec
        key = (id(spec), dout_one, count)
        if key not in self._worlds:
            self._worlds[key] = worlds_for(spec, dout_one, count)
        return self._worlds[key]

    def grade(self, source: str, filename: str = "ANSWER.py", explain: bool = True) -> Report:
        """Verdicts for ``source``; ``explain=False`` skips the diagnoses of wrong answers."""
        reader = Reader(self.spec, self.d.chunked, filename)
        reader.run(source)
        if not reader.assignments:
            names = ", ".join(grad_name(n) for n in self.d.chunked.order)
            raise GradeError(f"{filename}: no gradient of {self.spec.name} is assigned "
                             f"(write dNAME = ... for one of {names})")
        verdicts = {name: self.judge(reader, rec) for name, rec in reader.assignments.items()}
        for name, v in verdicts.items():
            if explain and not v.correct and not v.diagnosis:
                self.explain(reader, reader.assignments[name], v, verdicts)
        report = Report(self.layer, self.spec, list(verdicts.values()))
        report.general_notes = list(reader.notes)
        return report

    def kink_mismatch(self, value, t, dout_one: bool, critical: dict):
        """The first probe world where the answer differs from the gradient, or None.

        Probe worlds put the arguments the answer or the gradient branch on at, beside and
        between their critical values (``x > 0.1`` against ``x > 0``). A world where the
        gradient itself is undefined is skipped; one where only the answer is undefined is
        a mismatch."""
        for w in probe_worlds(self.spec, dout_one, critical) if critical else ():
            try:
                w.gradient(t.name)
            except UNDEFINED:
                continue
            if not self.matches(value, t, [w]):
                return w
        return None

    def kink_diagnosis(self, value, t, world, critical: dict) -> str:
        """Where an answer right at random points goes wrong: the first differing element."""
        got, want = world.over(value, t.dims), world.gradient(t.name)
        for idx, g in got.items():
            if not close(g, want[idx]):
                same_dims = [name for name in critical if self.spec.tensors[name].dims == t.dims]
                at = " and ".join(f"{name} = {_fmt_number(real(world.values[name][idx]))}"
                                  for name in same_dims)
                return (f"right at random points, but not where it branches: at {at or 'a branch point'} "
                        f"yours is {_fmt_number(real(g))}, the gradient {_fmt_number(real(want[idx]))}")
        return "right at random points, but not where it branches"

    # -- one gradient ------------------------------------------------------
    def judge(self, reader: Reader, rec: Assignment) -> Verdict:
        """Correct or not (proof and exact test); shape errors are diagnosed here."""
        spec = self.spec
        t = spec.tensors[rec.tensor]
        v = Verdict(rec.name, rec.tensor, rec.line, False)
        final = reader.final(rec)
        if isinstance(final, Poison):
            v.diagnosis = final.message
            return v
        local = reader.expand(final.expr, local_for=rec.name)
        if isinstance(local, Poison):
            v.diagnosis = f"it uses a value with a shape error: {local.message}"
            return v
        value = reader.expand(final.expr)
        v.yours = local
        incoming = reader.incoming
        circular = self.circular(local, t)
        if circular:
            v.diagnosis = circular
            return v
        graded = local if isinstance(value, Poison) else value
        dout_one = not spec.output_tensor.dims and incoming not in self.inliner.full(graded).free_symbols
        v.incoming_is_one = dout_one
        derived_display = (self.d.fused.gradients.get(rec.tensor) if t.differentiable
                           else self.d.chunked.gradient(rec.tensor))
        derived_full = self.inliner.of(rec.tensor)
        if dout_one:
            derived_display = derived_display.xreplace({incoming: 1})
            derived_full = derived_full.xreplace({incoming: 1})
        v.derived = derived_display
        v.derived_full = derived_full
        worlds = self.worlds(dout_one)
        if final.dims != t.dims:
            v.shape = f"{dims_str(final.dims)}, not {dims_str(t.dims)}"
            v.diagnosis = self.shape_diagnosis(local, final.dims, t, worlds)
            return v
        if isinstance(value, Poison):
            return v  # an earlier gradient it reads has a shape error; explained later
        v.notes.extend(precision_notes(spec, value))
        same = self.matches(value, t, worlds)
        full = self.inliner.full(value)
        try:  # an answer too big to expand is left to the exact test (below, with more worlds)
            res = _within(PROOF_SECONDS, residual, spec, full, derived_full) \
                if sp.count_ops(full) < PROOF_OPS_LIMIT else None
        except Exception:  # the proof is a second opinion; never let it crash a grade
            res = None
        proven = res is not None and res == 0
        if same and proven:
            v.correct = True
            v.notes.extend(float32_notes(spec, full, derived_full, dout_one))
            return v
        if same and self.matches(value, t, self.worlds(dout_one, count=8)):
            critical = critical_values(self.spec, full, derived_full)
            kink = self.kink_mismatch(value, t, dout_one, critical)
            if kink is None:
                v.correct = True
                v.notes.append("equal by the exact randomised test (8 sizes and seeds, and points on "
                               "its branch points); the symbolic reduction did not reach zero")
                return v
            v.diagnosis = self.kink_diagnosis(value, t, kink, critical)
        if proven and not same:
            v.notes.append("the symbolic reduction says equal but exact evaluation disagrees; "
                           "graded wrong (please report this)")
        return v


class _OutOfTime(Exception):
    pass


def _within(seconds, fn, *args):
    """``fn(*args)``, or None when it runs past ``seconds`` (main thread on POSIX; else no limit).

    SymPy's ``cancel`` on an unlucky answer can run for minutes; the exact test
    does not need it, so a grade never hangs on the second opinion.
    """
    import signal
    import threading

    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        return fn(*args)

    def late(signum, frame):
        raise _OutOfTime

    previous = signal.signal(signal.SIGALRM, late)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return fn(*args)
    except _OutOfTime:
        return None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def grade(layer: str, source: str, filename: str = "ANSWER.py", **options) -> Report:
    """Grade ``source`` (the answer's Python text) against ``layer`` built with ``options``."""
    return Grader(layer, options).grade(source, filename)

