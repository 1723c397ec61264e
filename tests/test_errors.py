"""Every failure a user's spec or command line can cause is one line and exit status 2."""

import os
import subprocess
import sys

import pytest

from conftest import REPO
from symbp.cli import main

SPEC_HEAD = ('"""A user layer."""\nfrom sympy import tanh, exp\nfrom symbp.spec import Spec, Sum\n'
             'OPTIONS = {}\n\n\n')


def run_cli(args, capsys):
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def write_spec(tmp_path, name, body):
    path = tmp_path / f"{name}.py"
    path.write_text(SPEC_HEAD + body)
    return str(path)


@pytest.mark.parametrize("body, expect", [
    ("def build():\n    s = Spec('a', 'a')\n    return s.nothing_here\n",
     "a.py:9: build() raised AttributeError"),
    ("def build():\n    (n,) = Spec('a', 'a').axes('n')\n", "a.py:8: build() raised TypeError"),
    ("def build():\n    return undefined_name\n", "a.py:8: build() raised NameError"),
])
def test_exceptions_inside_build_name_the_file_and_line(tmp_path, capsys, body, expect):
    code, out, err = run_cli(["derive", write_spec(tmp_path, "a", body)], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and expect in err, err


@pytest.mark.parametrize("name", ["self", "torch", "backward", "_hidden", "chunked"])
def test_names_that_would_collide_with_generated_code_are_refused_at_derive(tmp_path, capsys, name):
    body = (f"def build():\n    s = Spec('b', 'b')\n    n = s.axes('n')\n    x = s.input('{name}', (n,))\n"
            "    s.output('y', tanh(x))\n    return s\n")
    code, _, err = run_cli(["derive", write_spec(tmp_path, "b", body)], capsys)
    assert code == 2 and err.count("\n") == 1 and name in err, err


def test_common_binding_names_like_out_generate_and_import(tmp_path, capsys):
    body = ("def build():\n    s = Spec('c', 'c')\n    n = s.axes('n')\n    x = s.input('x', (n,))\n"
            "    out = s.let('out', exp(x))\n    s.output('ctx', out * x)\n    return s\n")
    path = write_spec(tmp_path, "c", body)
    (tmp_path / "gen").mkdir()
    assert run_cli(["generate", path, "-o", str(tmp_path / "gen")], capsys)[0] == 0
    code = ("import torch, c\nx = torch.randn(4, dtype=torch.float64, requires_grad=True)\n"
            "(x.exp() * x).sum().backward()\n_, k = c.forward(x.detach())\n"
            "assert torch.allclose(c.backward(k, torch.ones(4, dtype=torch.float64))[0], x.grad)\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path / "gen", capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_output_to_a_folder_is_one_line(tmp_path, capsys):
    code, _, err = run_cli(["derive", "tanh", "-o", str(tmp_path)], capsys)
    assert code == 2 and "folder" in err and err.count("\n") == 1


def test_unsupported_function_lists_what_is_supported(tmp_path, capsys):
    body = ("from sympy import besselj\n\ndef build():\n    s = Spec('e', 'e')\n    n = s.axes('n')\n"
            "    x = s.input('x', (n,))\n    s.output('y', besselj(0, x))\n    return s\n")
    code, _, err = run_cli(["derive", write_spec(tmp_path, "e", body)], capsys)
    assert code == 2 and "besselj" in err and "supported" in err and err.count("\n") == 1, err


def test_a_console_without_sigma_gets_ascii():
    env = dict(os.environ, PYTHONIOENCODING="ascii")
    r = subprocess.run([sys.executable, "-m", "symbp", "derive", "batchnorm"], capture_output=True, env=env,
                       cwd=REPO)
    assert r.returncode == 0, r.stderr
    text = r.stdout.decode("ascii")
    assert "Sum_n(" in text and "dhprebn" in text


def test_generate_never_writes_over_the_spec_file(tmp_path, capsys):
    spec = tmp_path / "mine.py"
    spec.write_text((REPO / "tests" / "specs" / "perm.py").read_text().replace('"perm"', '"mine"'))
    before = spec.read_text()
    code, _, err = run_cli(["generate", str(spec), "-o", str(tmp_path)], capsys)
    assert code == 2 and "would replace the spec file" in err and err.count("\n") == 1, err
    assert spec.read_text() == before and not (tmp_path / "mine.md").exists()
