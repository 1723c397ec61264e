"""The layer registry: one module per layer, forward pass only.

A layer module has a docstring whose first line describes it, an ``OPTIONS``
table ``{name: (default, type or tuple of choices, help)}`` and a
``build(**options) -> Spec`` function. Built-in layers are the modules of
this package; a user's layer is any ``.py`` file with the same three things.
Float options are runtime scalars (positive); choice options change the
formula and so the generated code.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import pkgutil
from dataclasses import dataclass
from pathlib import Path

from symbp.errors import SymbpError
from symbp.spec import Spec, SpecError, check_identifier


class LayerError(SymbpError, ValueError):
    """Unknown layer, unreadable spec file, or a bad option value."""


@dataclass
class Layer:
    name: str
    description: str
    module: object

    @property
    def options(self) -> dict:
        """``{name: (default, kind, help)}``; kind is ``float`` or a tuple of the allowed words."""
        options = getattr(self.module, "OPTIONS", {})
        if not isinstance(options, dict):
            raise LayerError(f"layer {self.name!r}: OPTIONS must be a dict of name: (default, kind, help), "
                             f"not {type(options).__name__}")
        for key, entry in options.items():
            kind = entry[1] if isinstance(entry, tuple) and len(entry) == 3 else None
            words = isinstance(kind, tuple) and kind and all(isinstance(w, str) for w in kind)
            if not (kind is float or words):
                raise LayerError(f"layer {self.name!r}: OPTIONS[{key!r}] must be (default, kind, help) "
                                 f"with kind float or a tuple of words; got {entry!r}")
        return options

    def resolve(self, given: dict) -> dict:
        """Validated option values (strings from the command line are converted)."""
        out = {}
        for key, value in given.items():
            if key not in self.options:
                known = ", ".join(self.options) or "none"
                raise LayerError(f"layer {self.name!r} has no option {key!r} (options: {known})")
            default, kind, _ = self.options[key]
            if isinstance(kind, tuple):
                if value not in kind:
                    raise LayerError(f"option {key} must be one of {', '.join(kind)}, got {value!r}")
            else:
                try:
                    value = float(value)
                except (TypeError, ValueError):
                    raise LayerError(f"option {key} must be a number, got {value!r}") from None
                if not value > 0 or value == float("inf"):
                    raise LayerError(f"option {key} must be a positive finite number, got {value!r}")
            out[key] = value
        return out

    def class_name(self, module: str | None = None) -> str:
        """The generated layer class: ``CLASS`` from the spec file, else the module name in CamelCase."""
        name = getattr(self.module, "CLASS", None) or "".join(
            w.capitalize() for w in (module or self.name).split("_"))
        try:
            return check_identifier(name, "layer class name")
        except SpecError as e:
            raise LayerError(str(e)) from None

    def _where(self, exc) -> str:
        """``file:line: `` of the deepest frame of ``exc`` inside this layer's spec file."""
        import traceback

        path = getattr(self.module, "__file__", None)
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if path and f.filename == path]
        if not frames:
            return f"layer {self.name!r}: "
        return f"{Path(path).name}:{frames[-1].lineno}: "

    def defaults(self) -> dict:
        return {k: v[0] for k, v in self.options.items()}

    def build(self, **options) -> Spec:
        opts = self.defaults()
        opts.update(self.resolve(options))
        try:
            spec = self.module.build(**opts)
        except SpecError as e:
            raise SpecError(f"{self._where(e)}{e}") from None
        except Exception as e:  # a user's build(): one line naming the file and line, not a traceback
            raise LayerError(f"{self._where(e)}build() raised {type(e).__name__}: {e}") from None
        if not isinstance(spec, Spec):
            raise LayerError(f"layer {self.name!r}: build() must return a Spec")
        spec.settings = opts
        return spec


def builtin_names() -> list:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def describe_builtin(name: str) -> str:
    """First docstring line, read without importing (``symbp list`` stays fast)."""
    src = Path(__file__).with_name(name + ".py").read_text(encoding="utf-8")
    doc = ast.get_docstring(ast.parse(src)) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def load(name_or_path: str) -> Layer:
    """A built-in layer by name, or a user's spec file by path."""
    if name_or_path.endswith(".py") or "/" in name_or_path or "\\" in name_or_path:
        return _load_file(Path(name_or_path))
    if name_or_path not in builtin_names():
        raise LayerError(f"unknown layer {name_or_path!r}; known layers: {', '.join(builtin_names())}")
    module = importlib.import_module(f"symbp.layers.{name_or_path}")
    return Layer(name_or_path, _first_line(module.__doc__), module)


def _load_file(path: Path) -> Layer:
    if not path.is_file():
        raise LayerError(f"spec file {str(path)!r} does not exist")
    try:
        name = check_identifier(path.stem, "layer file name")
    except SpecError as e:
        raise LayerError(str(e)) from None
    spec = importlib.util.spec_from_file_location(f"symbp_user_layer_{name}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SpecError:
        raise
    except Exception as e:  # a user's file: report, do not crash
        raise LayerError(f"spec file {str(path)!r} failed to load: {type(e).__name__}: {e}") from None
    if not callable(getattr(module, "build", None)):
        raise LayerError(f"spec file {str(path)!r} defines no build() function")
    return Layer(name, _first_line(module.__doc__), module)


def _first_line(doc) -> str:
    doc = (doc or "").strip()
    return doc.splitlines()[0] if doc else ""
