"""The README's "Write your own layer" example, executed as a user would run it."""

import os
import re
import subprocess
import sys

from conftest import REPO


def readme_example() -> str:
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Write your own layer"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def symbp(*args, cwd):
    """Run this checkout's symbp (not whichever one is installed) in ``cwd``."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "symbp", *args], capture_output=True, text=True, cwd=cwd,
                          env=env)


def test_readme_example_derives_generates_and_checks(tmp_path):
    source = readme_example()
    assert len([line for line in source.splitlines() if line.strip()]) < 20
    (tmp_path / "swish_layer.py").write_text(source)
    r = symbp("derive", "swish_layer.py", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "dbeta" in r.stdout and "Fused closed form" in r.stdout
    (tmp_path / "out").mkdir()
    r = symbp("generate", "swish_layer.py", "-o", "out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out" / "swish_layer.py").is_file() and (tmp_path / "out" / "swish_layer.md").is_file()
    r = symbp("check", "swish_layer.py", "--dtype", "float64", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "5 of 5 gradients match autograd" in r.stdout
    # the generated module works on its own, against autograd of the same formula
    code = ("import torch, swish_layer as m\n"
            "x = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)\n"
            "b = torch.rand(1, 3, dtype=torch.float64, requires_grad=True)\n"
            "y = x * torch.sigmoid(b * x); dy = torch.randn_like(y); y.backward(dy)\n"
            "_, ctx = m.forward(x.detach(), b.detach())\n"
            "dx, db = m.backward(ctx, dy)\n"
            "assert torch.allclose(dx, x.grad, rtol=1e-10) and torch.allclose(db, b.grad, rtol=1e-10)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path / "out")
    assert r.returncode == 0, r.stderr


def test_bad_user_spec_names_the_binding(tmp_path):
    bad = readme_example().replace("1 / (1 + exp(-beta * x))", "besselj(0, x)").replace(
        "from sympy import exp", "from sympy import besselj, exp")
    (tmp_path / "bad_layer.py").write_text(bad.replace("swish_layer", "bad_layer"))
    r = symbp("derive", "bad_layer.py", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("symbp: error: bad_layer.py:15: binding 'sig': unsupported function besselj "
                               "(supported: exp, log, tanh") and r.stderr.count("\n") == 1, r.stderr


def test_a_spec_with_nothing_to_differentiate_is_refused_at_derive(tmp_path):
    (tmp_path / "only_data.py").write_text(
        "from symbp.spec import Spec\n\nOPTIONS = {}\n\n\ndef build():\n"
        "    s = Spec('only_data', 'data in, data out')\n    n, d = s.axes('n d')\n"
        "    t = s.data('t', (n, d))\n    s.output('y', t * 3)\n    return s\n")
    for command in ("derive", "generate", "check"):
        args = (command, "only_data.py") + (("-o", str(tmp_path / "out")) if command == "generate" else ())
        (tmp_path / "out").mkdir(exist_ok=True)
        r = symbp(*args, cwd=tmp_path)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert "has no input or parameter" in r.stderr and r.stderr.count("\n") == 1, r.stderr
