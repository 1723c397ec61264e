"""generated/ is current, reproducible, written atomically, and safe from injected names."""

import importlib.util
import re
import shutil
import subprocess
import sys
import zipfile

import pytest

from conftest import REPO
from symbp.cli import main
from symbp.codegen import render


def test_generated_is_what_the_specs_render():
    """The suite's one staleness gate: re-render every layer and compare bytes with generated/.

    Also no module or derivation is left over from a layer that no longer renders it, and
    nothing rendered depends on when it was rendered.
    """
    files = render.render_all()
    diff = render.check(files, REPO / "generated")
    assert not diff, "generated/ is stale; run `symbp generate`:\n" + diff[-3000:]
    for name, text in files.items():
        assert (REPO / "generated" / name).read_bytes() == text.encode("utf-8"), name
        assert not re.search(r"\d{4}-\d{2}-\d{2}|\d{2}:\d{2}:\d{2}", text), name  # no dates or times
    on_disk = {p.name for p in (REPO / "generated").iterdir() if p.suffix in (".py", ".md")}
    assert on_disk == set(files), on_disk ^ set(files)


def test_hand_edit_is_reported_with_a_diff(tmp_path, capsys):
    out = tmp_path / "gen"
    shutil.copytree(REPO / "generated", out)
    path = out / "batchnorm.py"
    path.write_text(path.read_text().replace("bnraw = ", "bnraw = 1.0001*", 1))
    assert main(["generate", "--check", "-o", str(out)]) == 1
    diff = capsys.readouterr().out
    assert "-    bnraw = 1.0001*" in diff and "+    bnraw = " in diff
    # and generate repairs it, touching only that file
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert main(["generate", "-o", str(out)]) == 0
    after = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    changed = [n for n in after if after[n] != before.get(n)]
    assert changed == ["batchnorm.py"]
    assert main(["generate", "--check", "-o", str(out)]) == 0
    assert not list(out.glob(".*.tmp"))  # no temp files left behind


def test_generate_into_missing_folder_is_an_error(tmp_path):
    assert main(["generate", "-o", str(tmp_path / "missing")]) == 2


@pytest.mark.parametrize("bad", ["x; import os", "class", "a-b", "1x"])
def test_names_that_are_not_identifiers_are_rejected(bad):
    from symbp.spec import Spec, SpecError

    with pytest.raises(SpecError, match="not a plain Python identifier"):
        s = Spec("ok", "ok")
        s.axes("n")
        s.input(bad, (s.axis_list[0],))
    with pytest.raises(SpecError, match="not a plain Python identifier"):
        Spec(bad, "layer")


def test_wheel_ships_generated_modules_and_templates(tmp_path):
    """A non-editable install carries generated/ and the templates."""
    # pip's isolated build for `pip install -e .` leaves no build backend in the environment
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("setuptools is not installed here; an offline build (--no-build-isolation) needs it")
    if (importlib.util.find_spec("setuptools.command.bdist_wheel") is None
            and importlib.util.find_spec("wheel") is None):
        pytest.skip("this setuptools predates its own bdist_wheel and the wheel package is not installed")
    src = tmp_path / "src"  # a copy: the build writes build/ and *.egg-info beside the sources
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", "build", "*.egg-info", "__pycache__",
                                                             ".hypothesis", ".*_cache", "runs"))
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                        "-w", str(tmp_path), str(src)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    (wheel,) = tmp_path.glob("symbp-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for must in ("generated/__init__.py", "generated/batchnorm.py", "generated/cross_entropy.md",
                 "symbp/codegen/templates/layer.py.j2", "symbp/layers/batchnorm.py"):
        assert must in names, must


def test_unchanged_specs_are_not_derived_again(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMBP_CACHE_DIR", str(tmp_path))
    first = render.render_all()
    assert list((tmp_path / "generate").glob("*.json"))

    def no_derivation(*a, **k):
        raise AssertionError("derived again although nothing changed")

    monkeypatch.setattr(render, "_render_variant", no_derivation)
    assert render.render_all() == first
    with pytest.raises(AssertionError, match="derived again"):
        render.render_all(cache=False)


def test_cache_key_follows_the_spec_its_neighbours_and_its_options(tmp_path, monkeypatch):
    from symbp import cache

    monkeypatch.setenv("SYMBP_CACHE_DIR", str(tmp_path / "cache"))
    spec = tmp_path / "my_gain.py"
    spec.write_text('"""x times a gain."""\nfrom symbp.spec import Spec\nOPTIONS = {}\n\n'
                    "def build():\n    s = Spec('my_gain', 'g')\n    n, d = s.axes('n d')\n"
                    "    x = s.input('x', (n, d))\n    g = s.param('g', (1, d))\n"
                    "    s.output('y', g * x)\n    return s\n")
    k1 = cache.key("generate", str(spec), ["my_gain", {}])
    assert cache.key("generate", str(spec), ["my_gain", {}]) == k1
    spec.write_text(spec.read_text().replace("g * x", "g * x * x"))
    k2 = cache.key("generate", str(spec), ["my_gain", {}])
    assert k2 != k1
    (tmp_path / "helpers.py").write_text("SCALE = 2\n")  # a module the spec could import
    assert cache.key("generate", str(spec), ["my_gain", {}]) != k2
    assert cache.key("generate", "batchnorm", ["batchnorm", {}]) != cache.key(
        "generate", "batchnorm", ["batchnorm_biased", {"variance": "biased"}])
    text = ["text", []]
    assert cache.key("derive", "batchnorm", text) != cache.key("derive", "cross_entropy", text)
    assert cache.key("derive", "no_such_layer", []) is None
    monkeypatch.setenv("SYMBP_CACHE_DIR", "off")
    assert cache.key("derive", "batchnorm", []) is None


def test_a_repeated_derive_comes_from_the_cache_and_matches(tmp_path, monkeypatch, capsys):
    from symbp.cli import main
    from symbp.engine import derivation

    monkeypatch.setenv("SYMBP_CACHE_DIR", str(tmp_path))
    assert main(["derive", "tanh", "--format", "markdown"]) == 0
    first = capsys.readouterr().out
    assert list((tmp_path / "derive").glob("*.json"))

    def no_derivation(*a, **k):
        raise AssertionError("derived again although nothing changed")

    monkeypatch.setattr(derivation, "derive", no_derivation)
    assert main(["derive", "tanh", "--format", "markdown"]) == 0
    assert capsys.readouterr().out == first
    assert main(["derive", "tanh"]) == 2  # another format is another entry
    assert "derived again" in capsys.readouterr().err
    assert main(["derive", "relu", "--format", "markdown"]) == 2  # and another layer too
    assert "derived again" in capsys.readouterr().err
