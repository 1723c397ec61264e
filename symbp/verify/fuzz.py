"""Random specs from the spec grammar, and the check each one must pass.

A generated spec is the source text of a spec file (a ``build()`` returning
a ``Spec``), so it goes through exactly what a user's file goes through:
``load`` -> derive -> render -> exec. It has two axes ``(n, <feature>)``,
inputs of dims ``(n, f)`` and parameters of dims ``(1, f)`` or ``(f,)``,
maybe a positive option, and a chain of bindings built from elementwise
functions (``exp``, ``tanh``, ``log`` of positive things only, powers
including negative and fractional ones of positive things, ``Abs``),
products, sums, reductions over each axis (``Sum``, mean, ``Max``) and
reuse of earlier bindings (several consumers per binding). Every binding is
consumed by the output, so every input gets a gradient; a random subset of
bindings and inputs is saved.

``check_source`` derives, renders and runs it on random (and sometimes
edge-valued: zeros, ties) float64 arguments, and compares the forward, the
fused backward (with the full and the lean ``chunked=False`` context) and
every chunked gradient with autograd of ``symbp.verify.reference``.

The generator takes a ``draw(kind, *args)`` callable so that hypothesis
(in tests, which shrinks) and ``random.Random`` (in the benchmark script,
which runs thousands) drive the same grammar.
"""

from __future__ import annotations

import random
import traceback
from dataclasses import dataclass

FEATURE_AXES = ("d", "c")


@dataclass
class Node:
    text: str
    axes: frozenset
    positive: bool = False
    leafish: bool = False  # a tensor or a tanh of one: exp of it stays in range
    uniform: bool = True  # every additive term varies along every axis of the node


class Grammar:
    """Draws one spec's source text; ``draw('int', lo, hi)`` / ``draw('choice', seq)``."""

    def __init__(self, draw, mixed_sums: bool = True):
        self._draw = draw
        self.mixed_sums = mixed_sums  # False: never reduce a sum of terms with different axes

    def int(self, lo, hi):
        return self._draw("int", lo, hi)

    def choice(self, seq):
        return seq[self._draw("int", 0, len(seq) - 1)]

    def spec_source(self, name: str = "fz") -> str:
        f = self.f = self.choice(FEATURE_AXES)
        axes = {"n": "n", "f": f}
        lines = [f"    n, {f} = s.axes(\"n {f}\")"]
        atoms = []
        n_inputs = self.int(1, 2)
        for k in range(n_inputs):
            lines.append(f"    x{k} = s.input(\"x{k}\", (n, {f}))")
            atoms.append(Node(f"x{k}", frozenset("nf"), leafish=True))
        for k in range(self.int(0, 2)):
            dims = self.choice([f"(1, {f})", f"({f},)"])
            lines.append(f"    w{k} = s.param(\"w{k}\", {dims})")
            atoms.append(Node(f"w{k}", frozenset("f"), leafish=True))
        if self.int(0, 2) == 0:  # a data tensor: numbers with no gradient (int or bool at run time)
            lines.append(f"    m0 = s.data(\"m0\", (n, {f}))")
            atoms.append(Node("m0", frozenset("nf"), leafish=True))
        self.option = None
        if self.int(0, 3) == 0:
            lines.append("    alpha = s.option(\"alpha\", 0.75)")
            self.option = Node("alpha", frozenset(), positive=True, leafish=True)
        inputs = [a.text for a in atoms]
        consumed = set()
        bindings = []
        for k in range(self.int(1, 4)):
            node = self.expr(atoms, depth=self.int(1, 3), consumed=consumed)
            bname = f"b{k}"
            lines.append(f"    {bname} = s.let(\"{bname}\", {node.text}, dims={_dims(node.axes, axes)})")
            b = Node(bname, node.axes, node.positive, leafish=False)  # a binding is a fresh tensor
            atoms.append(b)
            bindings.append(b)
        # the output consumes every value nothing else consumed, so every input gets a gradient
        loose = [a for a in atoms if a.text not in consumed]
        terms = []
        for a in loose:
            coef = self.choice(["", "2*", "-", "Rational(1, 3)*"])
            terms.append(Node(f"{coef}{a.text}", a.axes))
        out_axes = frozenset().union(*[t.axes for t in terms])
        body = " + ".join(t.text for t in terms)
        if not self.mixed_sums and len({t.axes for t in terms}) > 1:
            parts = []
            for t in terms:
                text = t.text
                for ax in sorted(t.axes):
                    text = f"Sum({axes[ax]}, {text})"
                parts.append(text)
            body, out_axes = " + ".join(parts), frozenset()
        elif self.int(0, 1) and out_axes:
            for ax in sorted(out_axes):
                red = self.choice(["Sum", "mean"])
                axis = axes[ax]
                body = f"Sum({axis}, {body})" + (f"/{axis}" if red == "mean" else "")
            out_axes = frozenset()
        lines.append(f"    s.output(\"y\", {body}, dims={_dims(out_axes, axes)})")
        pool = [b.text for b in bindings] + inputs
        saved = [p for p in pool if self.int(0, 2) == 0]
        if saved:
            lines.append(f"    s.save({', '.join(saved)})")
        head = [
            f'"""Fuzzed spec {name}."""',
            "",
            "from sympy import Abs, Rational, exp, log, sqrt, tanh",
            "",
            "from symbp.spec import Max, Spec, Sum",
            "",
            "OPTIONS = {}",
            "",
            "",
            "def build():",
            f"    s = Spec(\"{name}\", \"fuzzed spec\")",
        ]
        return "\n".join(head + lines + ["    return s", ""])

    def expr(self, atoms, depth, consumed) -> Node:
        if depth <= 0 or self.int(0, 4) == 0:
            a = self.choice(atoms)
            consumed.add(a.text)
            return a
        kind = self.choice(["unary", "unary", "binary", "binary", "reduce"])
        if kind == "unary":
            e = self.expr(atoms, depth - 1, consumed)
            return self.unary(e)
        if kind == "binary":
            a = self.expr(atoms, depth - 1, consumed)
            b = self.expr(atoms, depth - 1, consumed)
            op = self.choice(["+", "-", "*"])
            if op == "-" and a.text == b.text:  # SymPy folds x - x to 0, which has no axes
                op = "+"
            pos = a.positive and b.positive and op != "-"
            uniform = a.uniform and b.uniform and (op == "*" or a.axes == b.axes)
            return Node(f"({a.text} {op} {b.text})", a.axes | b.axes, pos, uniform=uniform)
        e = self.expr(atoms, depth - 1, consumed)
        if not e.axes or not (self.mixed_sums or e.uniform):
            return e
        ax = self.choice(sorted(e.axes))
        axis = "n" if ax == "n" else self.f
        red = self.choice(["Sum", "Sum", "mean", "Max"])
        if red == "Max":
            text = f"Max({axis}, {e.text})"
            pos = e.positive
        elif red == "mean":
            text = f"Sum({axis}, {e.text})/{axis}"
            pos = e.positive
        else:
            text = f"Sum({axis}, {e.text})"
            pos = e.positive
        return Node(text, e.axes - {ax}, pos)

    def unary(self, e: Node) -> Node:
        node = self._unary(e)
        node.uniform = e.uniform
        return node

    def _unary(self, e: Node) -> Node:
        t = e.text
        options = ["tanh", "square", "cube", "abs", "softplus", "log_sq", "scale"]
        if e.leafish:
            options.append("exp")
        if e.positive:
            options += ["log", "inv", "rsqrt", "sqrt", "inv_sq"]
        op = self.choice(options)
        axes = e.axes
        if op == "tanh":
            return Node(f"tanh({t})", axes, leafish=e.leafish)
        if op == "square":
            return Node(f"({t})**2", axes, positive=e.positive)
        if op == "cube":
            return Node(f"({t})**3", axes, positive=e.positive)
        if op == "abs":
            return Node(f"Abs({t})", axes)
        if op == "softplus":
            return Node(f"log(1 + exp({t}))", axes, positive=True) if e.leafish else \
                Node(f"log(1 + ({t})**2)", axes)
        if op == "log_sq":
            return Node(f"log(({t})**2 + 1)", axes)
        if op == "scale":
            c = self.option.text if self.option is not None else "Rational(3, 2)"
            return Node(f"{c}*{t}", axes, positive=e.positive)
        if op == "exp":
            return Node(f"exp({t})", axes, positive=True)
        if op == "log":
            return Node(f"log({t})", axes)
        if op == "inv":
            return Node(f"({t})**(-1)", axes, positive=True)
        if op == "rsqrt":
            return Node(f"({t})**Rational(-1, 2)", axes, positive=True)
        if op == "sqrt":
            return Node(f"sqrt({t})", axes, positive=True)
        return Node(f"(({t})**2 + 1)**(-1)", axes, positive=True)


def _dims(axes: frozenset, names: dict) -> str:
    """Declared dims of a value varying along ``axes`` ('n' and/or 'f'): a kept 1 for the other."""
    if not axes:
        return "()"
    return f"({names['n'] if 'n' in axes else 1}, {names['f'] if 'f' in axes else 1})"


def spec_source(draw, name: str = "fz", mixed_sums: bool = True) -> str:
    """One random spec file's source text (see ``Grammar``)."""
    return Grammar(draw, mixed_sums).spec_source(name)


def random_draw(rng: random.Random):
    def draw(kind, lo, hi):
        return rng.randint(lo, hi)

    return draw


@dataclass
class Outcome:
    """``status``: pass, refused (a one-line ``SpecError``) or fail; ``stage`` and ``message`` say where."""

    status: str
    stage: str = ""
    message: str = ""


class Timeout(Exception):
    """The example ran past its time limit (a derivation that does not finish)."""


def check_source(source: str, folder, seed: int = 0, edge: str = "none", rtol: float = 1e-9,
                 timeout: float = 0) -> Outcome:
    """``check_one`` with a time limit in seconds (0: none): a hang is a failure of stage 'hang'."""
    import signal

    import symbp.engine.derivation  # noqa: F401
    import symbp.verify.check  # noqa: F401 - imports torch: never inside the time limit

    if not timeout or not hasattr(signal, "setitimer"):
        return check_one(source, folder, seed, edge, rtol)

    def alarm(signum, frame):
        raise Timeout(f"did not finish in {timeout:g} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        return check_one(source, folder, seed, edge, rtol)
    except Timeout as e:
        return Outcome("fail", "hang", str(e))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def check_one(source: str, folder, seed: int = 0, edge: str = "none", rtol: float = 1e-9) -> Outcome:
    """Derive, render and run one spec file; compare with the independent reference in float64.

    ``edge``: ``none`` (standard normal arguments), ``zeros`` (about a third
    of the entries of one float argument set to 0), ``ties`` (arguments
    rounded to multiples of 1/2, so maxima tie and ``Abs`` meets 0) or
    ``intdata`` (data tensors are 0/1, passed to the module as int64 or bool
    and to the reference as float64: the layer must compute in its own dtype).
    """
    import torch

    from symbp.layers import LayerError
    from symbp.spec import SpecError
    from symbp.verify.check import load_generated, random_arguments
    from symbp.verify.reference import reference_gradients

    name = "fz"
    path = folder / f"{name}.py"
    path.write_text(source, encoding="utf-8")
    stage = "derive"
    try:
        from symbp.engine.derivation import derive

        derive(str(path))
        stage = "render"
        module = load_generated(str(path))
    except (SpecError, LayerError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        return Outcome("refused", stage, f"{type(e).__name__}: {first}")
    except Timeout:
        raise
    except Exception as e:  # noqa: BLE001 - anything else is a crash a user would see as a traceback
        return Outcome("fail", stage, f"{type(e).__name__}: {_short(e)} [{_where(e)}]")
    spec = module.SPEC
    g = torch.Generator().manual_seed(seed)
    sizes = {"n": 2 + seed % 5, "d": 3 + seed % 4, "c": 3 + seed % 4}
    args = random_arguments(spec, sizes, torch.float64, g)
    if edge == "zeros":
        floats = [k for k, a in enumerate(args) if a.is_floating_point()]
        k = floats[seed % len(floats)]
        mask = torch.rand(args[k].shape, generator=g) < 0.34
        args[k] = args[k].masked_fill(mask, 0.0)
    elif edge == "ties":
        args = [(a * 2).round() / 2 if a.is_floating_point() else a for a in args]
    given = args
    if edge == "intdata":
        data = [t.role == "data" for t in spec.arguments]
        args = [torch.randint(0, 2, a.shape, generator=g).double() if d else a for a, d in zip(args, data)]
        as_int = torch.bool if seed % 2 else torch.int64
        given = [a.to(as_int) if d else a for a, d in zip(args, data)]
    stage = "run"
    try:
        out, ctx = module.forward(*given)
        dout = torch.randn(out.shape, dtype=torch.float64, generator=g)
        ref, _, values = reference_gradients(spec, args, dout)
        fused = tuple(module.backward(ctx, dout))
        _, lean = module.forward(*given, chunked=False)
        fused_lean = tuple(module.backward(lean, dout))
        fused_donated = tuple(module.backward(ctx, dout.clone(), donate=True))  # may compute in dout
        chunked = module.backward_chunked(ctx, dout)
    except Timeout:
        raise
    except Exception as e:  # noqa: BLE001
        return Outcome("fail", stage, f"{type(e).__name__}: {_short(e)} [{_where(e)}]")
    want_out = values[spec.output_tensor.name]
    problems = []
    # a forward that is 0 in exact arithmetic is judged against the size of what it sums
    magnitude = max([_fmax(v) for v in values.values() if v.is_floating_point()] + [0.0])
    bad = _mismatch(out, want_out, 1e-12, 1e-13 * magnitude)
    if bad:
        problems.append(f"forward {bad}")
    biggest = max([_fmax(v) for v in ref.values()] + [0.0])
    for t, got, got_lean, got_donated in zip(spec.differentiable, fused, fused_lean, fused_donated):
        want = ref["d" + t.name]
        for label, value in (("fused", got), ("fused lean", got_lean), ("fused donated", got_donated)):
            bad = _mismatch(value, want, rtol, 1e-12 * biggest)
            if bad:
                problems.append(f"{label} d{t.name} {bad}")
    for gname, got in chunked.items():
        if gname not in ref:
            problems.append(f"chunked {gname}: no such gradient in the reference")
            continue
        bad = _mismatch(got, ref[gname], rtol, 1e-12 * biggest)
        if bad:
            problems.append(f"chunked {gname} {bad}")
    if problems:
        return Outcome("fail", "compare", "; ".join(problems))
    return Outcome("pass")


def _fmax(v) -> float:
    import torch

    v = v[torch.isfinite(v)]
    return float(v.abs().max()) if v.numel() else 0.0


def _mismatch(got, want, rtol, floor) -> str:
    """'' when ``got`` matches ``want``, else a short reason (non-finite, shape, rel err)."""
    import torch

    if tuple(got.shape) != tuple(want.shape):
        return f"shape {tuple(got.shape)} != {tuple(want.shape)}"
    got = got.detach().double()
    ok = torch.isfinite(want)
    nonfinite = ok & ~torch.isfinite(got)
    if nonfinite.any():
        return f"non-finite at {int(nonfinite.sum())} entries where the reference is finite"
    if not ok.any():
        return ""
    err = float((got - want)[ok].abs().max())
    scale = _fmax(want)
    if err > rtol * scale + floor:
        return f"rel err {err / max(scale, 1e-300):.2e}"
    return ""


def _short(e) -> str:
    s = str(e).splitlines()[0] if str(e) else ""
    return s[:160]


def _where(e) -> str:
    tb = traceback.extract_tb(e.__traceback__)
    frames = [f for f in tb if "symbp" in f.filename or "generated" in f.filename]
    f = frames[-1] if frames else (tb[-1] if tb else None)
    return f"{f.filename.rsplit('/', 1)[-1]}:{f.name}" if f else "?"
