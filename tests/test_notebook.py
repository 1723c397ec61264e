"""The example notebook runs top to bottom on a clean kernel, and `import symbp` finds the package."""

import os
import subprocess
import sys
import warnings

import pytest

from conftest import REPO


def test_backprop_ninja_notebook_runs(tmp_path, monkeypatch):
    import ipykernel  # noqa: F401  (the kernel nbclient starts; all three come with .[dev])
    import nbclient
    import nbformat

    path = REPO / "examples" / "backprop_ninja.ipynb"
    nb = nbformat.read(path, as_version=4)
    with warnings.catch_warnings():  # every cell has an id (nbformat 4.5 will make it an error)
        warnings.simplefilter("error")
        nbformat.validate(nb)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), \
        "the notebook is stored without outputs; the run below makes them"
    # a small word list, so the run needs no download and stays quick
    names = REPO.parent / "shared" / "data" / "names.txt"
    words = tmp_path / "words.txt"
    if names.is_file():
        words.write_text("\n".join(names.read_text().split()[:4000]) + "\n")
    else:
        import random

        rng = random.Random(0)
        syll = ["an", "el", "ia", "mo", "ra", "li", "so", "ke", "na", "to", "vi", "da"]
        words.write_text("\n".join("".join(rng.choice(syll) for _ in range(rng.randint(1, 4)))
                                   for _ in range(4000)) + "\n")
    monkeypatch.setenv("SYMBP_WORDS", str(words))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(REPO / "examples")}})
    client.execute()
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert str(REPO / "symbp" / "__init__.py") in text
    assert "equals the hand-written one-liner" in text
    assert "dhprebn generated vs autograd" in text and "dlogits by hand   vs autograd" in text
    # the derivation and the gradients display as typeset math
    shown = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.get("data")]
    assert any("text/markdown" in o["data"] and "$$" in o["data"]["text/markdown"] for o in shown)
    assert any("text/latex" in o["data"] and r"\mathrm{dhprebn}" in o["data"]["text/latex"] for o in shown)


def test_import_symbp_next_to_a_clone_named_symbp(tmp_path):
    """A folder named symbp in the working directory must not shadow the package.

    An editable install of this layout is a plain path entry for the repository (see
    pyproject.toml), so the package is a regular one found on that path; this runs Python
    with the working directory holding an empty ``symbp`` folder and the repository on the path.
    """
    (tmp_path / "symbp").mkdir()
    r = subprocess.run([sys.executable, "-c", "import symbp, symbp.codegen.render as r; "
                        "print(symbp.__file__); print(r.TEMPLATES)"],
                       cwd=tmp_path, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, r.stderr
    file, templates = r.stdout.split()
    assert file == str(REPO / "symbp" / "__init__.py")
    assert templates == str(REPO / "symbp" / "codegen" / "templates")


def test_packages_sit_at_their_own_paths_so_editable_installs_use_a_path_entry():
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert cfg["package-dir"] == {"": "."}
    for pkg in cfg["packages"]:
        assert (REPO / pkg.replace(".", "/")).is_dir(), pkg
    assert (REPO / "symbp" / "codegen" / "templates" / "layer.py.j2").is_file()
