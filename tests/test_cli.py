"""`symbp list|derive`: output, formats, and one-line errors with exit status 2."""

import subprocess
import sys

import pytest

import symbp
from symbp.cli import main


def run(*args):
    return subprocess.run([sys.executable, "-m", "symbp", *args], capture_output=True, text=True)


def balanced(tex: str) -> bool:
    depth = 0
    i = 0
    while i < len(tex):
        ch = tex[i]
        if ch == "\\":
            i += 2
            continue
        depth += ch == "{"
        depth -= ch == "}"
        if depth < 0:
            return False
        i += 1
    return depth == 0


def test_list_names_every_layer(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("batchnorm", "cross_entropy"):
        line = next(line for line in out.splitlines() if line.startswith(name))
        assert len(line.split(None, 1)[1]) > 10  # a description follows the name


def test_derive_batchnorm_text(capsys):
    assert main(["derive", "batchnorm"]) == 0
    out = capsys.readouterr().out
    for name in ("dbnraw", "dbnvar_inv", "dbnvar", "dbndiff2", "dbndiff", "dbnmeani", "dhprebn",
                 "Σ_n(bndiff) = Σ_n(", "fused closed form"):
        assert name in out
    # backward order: each intermediate appears after the one that consumes it
    assert out.index("dbnraw ") < out.index("dbnvar_inv") < out.index("dbndiff2") < out.index("dbnmeani")


def test_derive_cross_entropy_shows_vanishing_max_path(capsys):
    assert main(["derive", "cross_entropy"]) == 0
    out = capsys.readouterr().out
    assert "dloss*(probs - targets)/n" in out
    assert "dlogits|through logit_maxes" in out


@pytest.mark.parametrize("layer", ["batchnorm", "cross_entropy"])
def test_latex_is_a_balanced_amsmath_document(layer):
    tex = symbp.derive(layer).latex()
    assert tex.startswith("\\documentclass") and "\\usepackage{amsmath" in tex
    assert tex.rstrip().endswith("\\end{document}")
    assert balanced(tex)
    assert tex.count("\\begin{align*}") == tex.count("\\end{align*}")
    assert "\\sum_{" in tex and "\\frac{" in tex
    if layer == "batchnorm":
        assert "\\sqrt{" in tex  # bnvar_inv = 1/sqrt(bnvar + eps)


def test_latex_compiles_when_a_tex_engine_exists(tmp_path):
    import shutil

    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex is not installed; braces and environments are checked above")
    (tmp_path / "bn.tex").write_text(symbp.derive("batchnorm").latex())
    r = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "bn.tex"],
                       cwd=tmp_path, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stdout[-2000:]


def test_jupyter_reprs():
    d = symbp.derive("cross_entropy")
    tex = d._repr_latex_()
    assert tex.startswith("$$") and tex.endswith("$$") and balanced(tex[2:-2])
    md = d._repr_markdown_()
    assert md.count("$$") % 2 == 0 and "\\frac" in md


def test_output_to_a_device_is_not_replaced():
    import os

    assert main(["derive", "cross_entropy", "-o", os.devnull]) == 0
    assert not os.path.isfile(os.devnull)


def test_output_file_and_formats(tmp_path):
    out = tmp_path / "bn.md"
    assert main(["derive", "batchnorm", "--format", "markdown", "-o", str(out)]) == 0
    assert out.read_text().startswith("# `batchnorm`")
    assert main(["derive", "batchnorm", "--variance", "biased", "--eps=1e-3", "-o", str(out)]) == 0
    text = out.read_text()
    assert "variance=biased" in text and "eps=0.001" in text


@pytest.mark.parametrize("args, message", [
    (["derive", "nosuchlayer"], "known layers: attention, batchnorm"),
    (["derive", "batchnorm", "--eps", "-1"], "positive"),
    (["derive", "batchnorm", "--eps", "0"], "positive"),
    (["derive", "batchnorm", "--eps", "abc"], "must be a number"),
    (["derive", "batchnorm", "--variance", "unbiased"], "must be one of bessel, biased"),
    (["derive", "batchnorm", "--colour", "red"], "has no option 'colour'"),
    (["derive", "batchnorm", "--format", "pdf"], "unknown format"),
    (["derive", "batchnorm", "-o", "/nonexistent-dir/x.tex"], "does not exist"),
    (["derive", "no/such/file.py"], "does not exist"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_input_is_one_line_exit_2(args, message):
    r = run(*args)
    assert r.returncode == 2
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert message in lines[0]


def test_derive_does_not_import_torch(tmp_path):
    code = ("import sys; from symbp.cli import main; "
            f"main(['derive', 'batchnorm', '-o', {str(tmp_path / 'bn.txt')!r}]);"
            "print('torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.strip() == "False", r.stderr


@pytest.mark.parametrize("layer", ["batchnorm", "cross_entropy"])
def test_check_prints_the_seeds_table_and_passes(layer, capsys):
    assert main(["check", layer]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if "| exact:" in line]
    names = {"batchnorm": ("dbnraw", "dbnvar_inv", "dbndiff2", "dbnmeani", "dhprebn (fused)"),
             "cross_entropy": ("dlogprobs", "dcounts_sum_inv", "dlogit_maxes", "dlogits (fused)")}[layer]
    for name in names:
        assert any(r.startswith(name + " ") for r in rows), name
    assert all("approximate: True" in r for r in rows)


def test_check_fails_when_a_gradient_is_wrong(monkeypatch, capsys):
    import symbp.verify.check as chk

    real = chk.load_generated

    def broken(*a, **k):
        mod = real(*a, **k)
        good = mod.backward
        mod.backward = lambda ctx, g: tuple(x * 1.01 for x in good(ctx, g))
        return mod

    monkeypatch.setattr(chk, "load_generated", broken)
    assert main(["check", "batchnorm"]) == 1
    assert "approximate: False" in capsys.readouterr().out
