"""The teaching views: every `=` they print holds, and their math renders everywhere.

Each chain of equalities is evaluated numerically, element by element, by a small torch
evaluator of the spec written here, and compared with torch autograd on that same forward:
a wrong step, a wrong local partial or a wrong identity fails, whatever the engine says.
"""

import re
import shutil
import subprocess

import pytest
import sympy as sp
import torch

import symbp
from symbp.functions import sigmoid, softplus
from symbp.layers import builtin_names
from symbp.spec import ArgmaxMask, Max, Sum
from symbp.teach.lesson import Label, Partial, Terms

SIZES = {"n": 4, "d": 3, "c": 5, "i": 3, "o": 2, "t": 2, "e": 3, "v": 4, "b": 2, "s": 3, "h": 4}
ALL = builtin_names() + ["batchnorm:biased"]


def _derive(ref):
    name, _, variant = ref.partition(":")
    return symbp.derive(name, variance=variant) if variant else symbp.derive(name)


class Evaluator:
    """Element expressions of a spec as torch tensors over all of its axes (size-one where absent)."""

    def __init__(self, spec, seed=0):
        self.spec = spec
        self.pos = {a: i for i, a in enumerate(spec.axis_list)}
        self.size = {a: SIZES[a.name] for a in spec.axis_list}
        g = torch.Generator().manual_seed(seed)
        self.values = {a: torch.tensor(float(self.size[a]), dtype=torch.float64) for a in spec.axis_list}
        for o in spec.options.values():
            self.values[o.symbol] = torch.tensor(o.default, dtype=torch.float64)
        for t in spec.arguments:
            shape = self._shape(t.dims)
            if t.role == "classes":
                idx = torch.randint(0, self.size[t.class_axis], self._shape(t.index_dims), generator=g)
                onehot = torch.zeros(shape, dtype=torch.float64)
                onehot.scatter_(self.pos[t.class_axis], idx, 1.0)
                self.values[t.symbol] = onehot
            else:
                self.values[t.symbol] = torch.randn(shape, generator=g, dtype=torch.float64).requires_grad_()
        for t in spec.bindings:
            v = self(t.expr)
            if tuple(v.shape) != self._shape(t.dims):
                v = v.expand(self._shape(t.dims)).clone()
            if v.requires_grad:
                v.retain_grad()
            self.values[t.symbol] = v
        out = spec.output_tensor
        dout = torch.randn(self._shape(out.dims), generator=g, dtype=torch.float64)
        (self.values[out.symbol] * dout).sum().backward()
        self.values[spec.adjoint(out.name)] = dout
        self.grads = {}
        for t in spec.tensors.values():
            if t.role != "classes" and t.role != "output":
                grad = self.values[t.symbol].grad
                self.grads[t.name] = grad if grad is not None else torch.zeros(self._shape(t.dims),
                                                                              dtype=torch.float64)
                self.values[spec.adjoint(t.name)] = self.grads[t.name]

    def _shape(self, dims):
        shape = [1] * len(self.spec.axis_list)
        for a in dims:
            if a != 1:
                shape[self.pos[a]] = self.size[a]
        return tuple(shape)

    def _full(self, v):
        v = torch.as_tensor(v, dtype=torch.float64)
        return v.reshape((1,) * len(self.spec.axis_list)) if v.dim() == 0 else v

    def __call__(self, e):
        if isinstance(e, Terms):
            return sum(self(t) for t in e)
        if e in self.values:
            return self._full(self.values[e])
        if e.is_number:  # 3, 1/2, pi, sqrt(2)
            return self._full(torch.tensor(float(e), dtype=torch.float64))
        if isinstance(e, (Sum, Max, ArgmaxMask)):
            b = self(e.body)
            k = self.pos[e.axis]
            full = list(b.shape)
            full[k] = self.size[e.axis]
            b = b.expand(full)
            if isinstance(e, Sum):
                return b.sum(k, keepdim=True)
            if isinstance(e, Max):
                return b.amax(k, keepdim=True)
            return (b == b.amax(k, keepdim=True)).to(torch.float64)
        if isinstance(e, sp.Add):
            return sum(self(a) for a in e.args)
        if isinstance(e, sp.Mul):
            out = self._full(torch.tensor(1.0, dtype=torch.float64))
            for a in e.args:
                out = out * self(a)
            return out
        if isinstance(e, sp.Pow):
            return self(e.base) ** self(e.exp)
        if isinstance(e, sp.Piecewise):  # the first branch whose condition holds
            out = self(e.args[-1].expr)
            for branch in reversed(e.args[:-1]):
                out = torch.where(self._holds(branch.cond), self(branch.expr), out)
            return out
        if isinstance(e, sp.Heaviside):  # H(0) is the second argument, 1/2 by default
            return torch.heaviside(self(e.args[0]), self(e.args[1]).expand(self(e.args[0]).shape))
        if isinstance(e, (sp.Max, sp.Min)):  # elementwise
            op = torch.maximum if isinstance(e, sp.Max) else torch.minimum
            out = self(e.args[0])
            for a in e.args[1:]:
                out = op(out, self(a))
            return out
        for f, tf in ((sp.exp, torch.exp), (sp.log, torch.log), (sp.tanh, torch.tanh), (sp.Abs, torch.abs),
                      (sp.sin, torch.sin), (sp.cos, torch.cos), (sp.erf, torch.erf), (sp.sign, torch.sign),
                      (sigmoid, torch.sigmoid), (softplus, lambda x: torch.log1p(torch.exp(x)))):
            if isinstance(e, f):
                return tf(self(e.args[0]))
        raise NotImplementedError(f"cannot evaluate {e!r}")

    def _holds(self, c):
        """A Piecewise condition as a boolean tensor."""
        if c is sp.true or c is sp.false:
            return self._full(torch.tensor(bool(c)))
        if isinstance(c, sp.And):
            return torch.stack(torch.broadcast_tensors(*[self._holds(a) for a in c.args])).all(0)
        if isinstance(c, sp.Or):
            return torch.stack(torch.broadcast_tensors(*[self._holds(a) for a in c.args])).any(0)
        if isinstance(c, sp.Not):
            return ~self._holds(c.args[0])
        ops = {sp.StrictGreaterThan: torch.gt, sp.GreaterThan: torch.ge, sp.StrictLessThan: torch.lt,
               sp.LessThan: torch.le, sp.Equality: torch.eq, sp.Unequality: torch.ne}
        return ops[type(c)](self(c.lhs), self(c.rhs))


def _close(a, b):
    a, b = torch.broadcast_tensors(a.detach().double(), b.detach().double())
    return torch.allclose(a, b, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("ref", ALL)
def test_every_equality_of_every_chain_holds_against_autograd(ref):
    d = _derive(ref)
    ev = Evaluator(d.spec)
    lesson = d.lesson
    checked = 0
    for sec in lesson.sections:
        for eq in sec.equations:
            if isinstance(eq.lhs, Label):
                want = torch.zeros(())  # a vanishing path or edge
            elif sec.key == "identities":
                want = ev(eq.lhs)
            elif sec.key == "forward":
                continue
            else:
                want = ev.values[eq.lhs]  # the autograd gradient of the tensor
            for step in eq.chain:
                if any(isinstance(a, Partial) for a in _atoms(step.expr)):
                    continue
                got = ev(step.expr)
                assert _close(got, want), f"{ref} ({eq.number}) {eq.lhs} = {step.expr} [{step.reason}]"
                checked += 1
            assert all(isinstance(part, Partial) for part, _ in eq.partials)
    assert checked > 0


def _atoms(e):
    if isinstance(e, Terms):
        return [a for t in e for a in _atoms(t)]
    return list(sp.preorder_traversal(e))


@pytest.mark.parametrize("ref", ALL)
def test_local_partials_match_autograd_of_one_binding(ref):
    """``∂y/∂x = value`` of each step, checked on an elementwise binding by autograd on that binding."""
    d = _derive(ref)
    ev = Evaluator(d.spec, seed=1)
    for eq in d.lesson.sections[1].equations:
        for part, value in eq.partials:
            y, x = (d.spec.tensor_of(s) for s in part.args)
            if y.expr.has(Sum, Max) or y.axes != x.axes:
                continue  # elementwise bindings of same-shaped tensors only
            xv = ev.values[x.symbol].detach().clone().requires_grad_()
            saved = ev.values[x.symbol]
            ev.values[x.symbol] = xv
            yv = ev(y.expr)
            (grad,) = torch.autograd.grad(yv.sum(), xv)
            got = ev(value)
            ev.values[x.symbol] = saved
            assert _close(got, grad), f"{ref}: {part} = {value}"


def test_batchnorm_teaches_what_the_issue_asks():
    d = symbp.derive("batchnorm")
    t = d.text()
    # the local partial of bnvar_inv, in the saved tensor: -(bnvar + eps)**(-3/2)/2 = -bnvar_inv**3/2
    assert "∂bnvar_inv/∂bnvar = -bnvar_inv**3/2" in t
    # two paths into dbndiff and dhprebn, each named
    step = {e.key: e for e in d.lesson.sections[1].equations}
    assert isinstance(step["dbndiff"].chain[0].expr, Terms) and len(step["dbndiff"].chain[0].expr) == 2
    assert isinstance(step["dhprebn"].chain[0].expr, Terms) and len(step["dhprebn"].chain[0].expr) == 2
    # the broadcast of bnvar_inv along n is a sum, with its reason
    assert any("broadcast in the forward is a sum in the backward" in n for n in step["dbnvar_inv"].notes)
    # the mean's path through the variance vanishes, by the identity Σ_n(bndiff) = 0
    assert "hpreact → bnraw → bnvar_inv → bnvar → bndiff2 → bndiff → bnmeani carries nothing" in t
    assert "Σ_n(bndiff) = Σ_n(-bnmeani + hprebn)    [by (2)]" in t
    # the final form in the readable grouping
    assert ("dhprebn = bngain*bnvar_inv/n * (n*dhpreact - Σ_n(dhpreact) "
            "- n/(n - 1)*bnraw*Σ_n(bnraw*dhpreact))") in t


def test_cross_entropy_max_shift_path_vanishes_with_its_reason():
    t = symbp.derive("cross_entropy").text()
    assert "dlogit_maxes|through norm_logits" in t and "they cancel" in t
    assert "Σ_c(probs) = Σ_c(counts*counts_sum_inv)" in t
    assert "dlogits = dloss/n * (probs - targets)" in t


def test_generated_lines_cite_their_equations():
    from generated import batchnorm

    src = open(batchnorm.__file__).read()
    nums = symbp.derive("batchnorm").lesson.numbers("backward")
    assert "dbnvar = " in src and f"# (1, d) ({nums['dbnvar']}) through bnvar_inv" in src
    md = open(batchnorm.__file__[:-3] + ".md").read()
    cites = re.findall(r"`(backward(?:_chunked)?)\(\)` in \[`batchnorm.py`, line (\d+)\]"
                       r"\(batchnorm.py#L\d+\): `(\w+) = ", md)
    assert len(cites) == len(nums) + 3  # every chunked step and every fused result
    lines = src.splitlines()
    for fn, line, name in cites:  # the cited line is that assignment, inside that function
        assert lines[int(line) - 1].startswith(f"    {name} = "), (fn, line, name)
        above = [ln for ln in lines[:int(line)] if ln.startswith("def ")]
        assert above[-1].startswith(f"def {fn}("), (fn, line)


# -- math that renders under pdflatex, MathJax and KaTeX -----------------------------------------

#: macros the views may use; all are in KaTeX's and MathJax's default sets and in amsmath
ALLOWED = {"begin", "end", "mathrm", "frac", "sum", "max", "left", "right", "cdot", "sqrt", "text",
           "quad", "qquad", "partial", "varepsilon", "mathbf", "log", "exp", "tanh", "_", "textbf",
           "operatorname", "left.", "right|", "\\", "{", "}", ",", "mathit",
           "geq", "leq", "sigma", "pi"}  # relations of Piecewise conditions (in cases), sigmoid, pi


def _math_blocks(md: str, flavor: str) -> list:
    if flavor == "github":
        return re.findall(r"```math\n(.*?)\n```", md, re.S)
    return re.findall(r"\$\$\n(.*?)\n\$\$", md, re.S)


def _check_math(tex: str):
    depth = 0
    for ch in tex.replace(r"\{", "").replace(r"\}", ""):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0, tex[:200]
    assert depth == 0, tex[:200]
    assert tex.count(r"\left") == tex.count(r"\right"), tex[:200]
    assert re.findall(r"\\begin\{(\w+)\}", tex) == re.findall(r"\\end\{(\w+)\}", tex)[::-1] or \
        sorted(re.findall(r"\\begin\{(\w+)\}", tex)) == sorted(re.findall(r"\\end\{(\w+)\}", tex))
    for macro in re.findall(r"\\([A-Za-z]+|.)", tex):
        assert macro in ALLOWED, f"\\{macro} is not in the allow-list: {tex[:200]}"
    for body in re.findall(r"\\text(?:bf)?\{([^{}]*)\}", tex):
        # MathJax prints macros inside \text literally; keep words plain
        assert "\\" not in body and "_" not in body and "^" not in body, body
        assert body.isascii(), body
    assert tex.isascii(), [c for c in tex if not c.isascii()][:5]


@pytest.mark.parametrize("ref", ALL)
def test_markdown_and_repr_latex_math_is_valid_for_mathjax_and_katex(ref):
    d = _derive(ref)
    gh = d.markdown()
    assert "$$" not in gh, "code hosts eat backslashes inside $$; use ```math fences"
    blocks = _math_blocks(gh, "github")
    assert blocks
    for b in blocks:
        _check_math(b)
    jp = d._repr_markdown_()
    assert "```math" not in jp
    assert len(_math_blocks(jp, "jupyter")) == len(blocks)
    rl = d._repr_latex_()
    assert rl.startswith("$$") and rl.endswith("$$")
    _check_math(rl[2:-2])
    _check_math(d.fused_gradients._repr_latex_()[2:-2])


def test_math_checker_rejects_what_breaks_mathjax():
    for bad in [r"\text{the part through norm\_logits}", r"\mathbb{1}", r"\frac{a}{b", r"\left( a"]:
        with pytest.raises(AssertionError):
            _check_math(bad)


def test_mermaid_graph_marks_summed_and_vanishing_edges():
    md = symbp.derive("cross_entropy").markdown()
    graph = re.search(r"```mermaid\n(.*?)```", md, re.S).group(1)
    assert graph.startswith("flowchart LR")
    assert re.search(r"t_norm_logits -\.->\|\"gradient 0\"\| t_logit_maxes|t_logit_maxes -\.->", graph)
    assert "t_logits -->" in graph and "t_targets -.->" in graph
    bn = re.search(r"```mermaid\n(.*?)```", symbp.derive("batchnorm").markdown(), re.S).group(1)
    assert 't_bnvar_inv -->|"summed over n on the way back"| t_bnraw' in bn


@pytest.mark.parametrize("ref", ALL)
def test_latex_of_every_layer_compiles_with_pdflatex(ref, tmp_path):
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex is not installed (apt-get install texlive-latex-base "
                    "texlive-latex-recommended); the math is still checked by the allow-list tests")
    d = _derive(ref)
    tex = d.latex()
    assert tex.isascii()
    (tmp_path / "doc.tex").write_text(tex)
    r = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
                       cwd=tmp_path, capture_output=True, text=True)
    log = (tmp_path / "doc.log").read_text(errors="replace")
    assert r.returncode == 0, log[-3000:]
    for problem in ("Undefined control sequence", "Missing $", "LaTeX Error", "Unicode character",
                    "Overfull \\hbox"):  # a line wider than the page is cut off at its edge
        assert problem not in log, problem
    assert (tmp_path / "doc.pdf").stat().st_size > 1000
    pages = int(re.search(r"Output written on doc\.pdf \((\d+) page", log).group(1))
    assert pages >= 1
    # content: every numbered equation and every gradient is in the document
    last = max(e.number for s in d.lesson.sections for e in s.equations)
    for k in range(1, last + 1):
        assert r"\tag{%d}" % k in tex, k
    for name in d.chunked_gradients:
        assert r"\mathrm{%s}" % name.replace("_", r"\_") in tex


def test_written_files_get_the_umask_not_0600(tmp_path):
    import os

    from symbp.fileio import write_atomic

    old = os.umask(0o022)
    try:
        write_atomic(tmp_path / "a.md", "x")
        assert (tmp_path / "a.md").stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        write_atomic(tmp_path / "b.md", "x")
        assert (tmp_path / "b.md").stat().st_mode & 0o777 == 0o600
        os.chmod(tmp_path / "a.md", 0o664)  # rewriting keeps an existing file's mode
        write_atomic(tmp_path / "a.md", "y")
        assert (tmp_path / "a.md").stat().st_mode & 0o777 == 0o664
    finally:
        os.umask(old)


def test_line_progress_prints_a_line_every_few_seconds():
    import io

    from symbp.progress import LineProgress

    now = [0.0]
    out = io.StringIO()
    bar = LineProgress(1000, every=5.0, stream=out, clock=lambda: now[0])
    for _ in range(10):  # 10 steps, one second apart: lines at 5 s and 10 s
        now[0] += 1.0
        bar.update(1)
        bar.set_postfix_str("loss 2.5000")
    assert out.getvalue().splitlines() == ["step 5/1,000 (0.5%), loss 2.5000, 1 steps/s",
                                           "step 10/1,000 (1.0%), loss 2.5000, 1 steps/s"]
    bar.close()
    assert len(out.getvalue().splitlines()) == 3


def test_derive_layer_help_lists_its_options(capsys):
    from symbp.cli import main

    assert main(["derive", "batchnorm", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--variance {bessel,biased}" in out and "default bessel" in out
    assert "--eps X" in out and "default 1e-05" in out
    assert "--format {text,latex,markdown,svg}" in out
    assert main(["derive", "nosuchlayer", "--help"]) == 2


def _node_renderers():
    """``node`` with the npm packages katex and mathjax-full (found through NODE_PATH), or a skip."""
    import os

    if shutil.which("node") is None:
        pytest.skip("node is not installed; the pure-Python allow-list check above still runs")
    r = subprocess.run(["node", "-e", "require('katex'); require('mathjax-full/js/mathjax.js')"],
                       capture_output=True, text=True, env=dict(os.environ))
    if r.returncode != 0:
        pytest.skip("npm packages katex and mathjax-full not found (npm install katex mathjax-full, "
                    "then set NODE_PATH to that node_modules); the allow-list check above still runs")


def _render_with_node(blocks):
    import json
    import os
    from pathlib import Path

    script = Path(__file__).parent / "js" / "render_math.js"
    r = subprocess.run(["node", str(script)], input=json.dumps(blocks), capture_output=True, text=True,
                       env=dict(os.environ))
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout)


def test_every_layers_math_renders_in_katex_and_mathjax():
    _node_renderers()
    blocks = []
    for ref in ALL:
        d = _derive(ref)
        blocks += _math_blocks(d.markdown(), "github") + _math_blocks(d._repr_markdown_(), "jupyter")
        blocks += [d._repr_latex_()[2:-2], d.fused_gradients._repr_latex_()[2:-2],
                   d.chunked_gradients._repr_latex_()[2:-2]]
    assert _render_with_node(blocks) == []
    # and the renderers do catch what the issue found
    problems = _render_with_node([r"\text{the part through norm\_logits}", r"\frac{a}{"])
    assert any("literal backslash" in p for p in problems) and any("KaTeX" in p for p in problems)


@pytest.mark.parametrize("ref", ALL)
def test_svg_picture_of_every_layer(ref, tmp_path):
    import xml.dom.minidom

    from symbp.cli import main

    d = _derive(ref)
    doc = xml.dom.minidom.parseString(d.svg())
    labels = [t.firstChild.data for t in doc.getElementsByTagName("text")]
    for t in d.spec.tensors.values():  # one box per tensor, with its shape
        assert any(lab.startswith(t.name + " (") for lab in labels), t.name
    assert len(doc.getElementsByTagName("path")) == len(d.lesson.edges) + 1  # + the arrow head
    red = [p for p in doc.getElementsByTagName("path") if p.getAttribute("stroke") == "#c0392b"]
    # the max shift's path vanishes: its two edges, or one where the max is also used directly
    shifted = {"cross_entropy": 2, "softmax": 2, "attention": 2, "log_softmax": 1, "logsumexp": 1}
    assert len(red) == len(d.lesson.zero_edges) == shifted.get(ref.split(":")[0], 0)
    out = tmp_path / "g.svg"
    assert main(["derive", ref.split(":")[0], "--format", "svg", "-o", str(out)]) == 0
    assert out.read_text().startswith("<svg")


def test_chains_of_a_user_layer_hold_against_autograd(tmp_path):
    """A spec outside the package (the README's swish, with a use both inside and outside a sum)."""
    (tmp_path / "swish_norm.py").write_text(
        '"""x * sigmoid(beta * x), divided by its row sum."""\n'
        "from sympy import exp\nfrom symbp.spec import Spec, Sum\nOPTIONS = {}\n\n"
        "def build():\n    s = Spec('swish_norm', 'test')\n    n, d = s.axes('n d')\n"
        "    x = s.input('x', (n, d))\n    beta = s.param('beta', (1, d))\n"
        "    sig = s.let('sig', 1 / (1 + exp(-beta * x)))\n    sw = s.let('sw', x * sig)\n"
        "    tot = s.let('tot', Sum(d, sw * sw))\n    s.output('y', sw * x / tot)\n"
        "    s.save(x, sig, beta)\n    return s\n")
    d = symbp.derive(str(tmp_path / "swish_norm.py"))
    ev = Evaluator(d.spec, seed=3)
    n_checked = 0
    for sec in d.lesson.sections:
        if sec.key in ("forward", "identities"):
            continue
        for eq in sec.equations:
            want = torch.zeros(()) if isinstance(eq.lhs, Label) else ev.values[eq.lhs]
            for step in eq.chain:
                if not any(isinstance(a, Partial) for a in _atoms(step.expr)):
                    assert _close(ev(step.expr), want), f"({eq.number}) {step.expr} [{step.reason}]"
                    n_checked += 1
    assert n_checked > 10
    assert "Σ_d(" in d.text()
