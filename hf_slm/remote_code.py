"""Remote code: the Python files that let a model folder load without hf-slm installed.

``write_remote_code(folder)`` writes, next to a model's ``config.json``, flat copies of the hf-slm
modules its configuration, model and processor need (their import closure, found by parsing imports
with `ast`), and sets ``auto_map`` in ``config.json`` (``AutoConfig`` and every Auto model class the
family is registered for in ``hf_slm/auto.py``) and in ``processor_config.json`` (``AutoProcessor``).
Then, in an environment with transformers but not hf-slm::

    AutoModelForCausalLM.from_pretrained("hf-slm/speech-lm-tiny", trust_remote_code=True)
    AutoProcessor.from_pretrained("hf-slm/speech-lm-tiny", trust_remote_code=True)

load the classes from those files (transformers' dynamic modules). Where hf-slm is imported,
transformers keeps using the installed classes (they are registered locally), so the files change
nothing there.

What transformers accepts as remote code (``transformers.dynamic_module_utils``): the files sit in the
repo's root; a file names its sibling files by ``from .sibling import name`` lines (found by a regular
expression, anywhere in the file, also inside functions), and every other import must be an installed
package. So each module ``hf_slm.x.y`` becomes ``hf_slm_x_y.py`` and every import of hf-slm in it is
rewritten mechanically:

- ``from hf_slm.x.y import a, b as c``   ->  ``from .hf_slm_x_y import a, b as c``
- ``from hf_slm import load_audio``      ->  ``from .hf_slm_audio import load_audio`` (a package's
  re-exports are followed to the module that defines the name)
- ``import hf_slm.x.y as m`` / ``from hf_slm.x import y`` (a module) -> ``from . import hf_slm_x_y as m``,
  after a ``from .hf_slm_x_y import __name__ as ...`` line that makes transformers fetch the file;
  a bare ``import hf_slm.x.y`` also renames the uses ``hf_slm.x.y.f`` to ``hf_slm_x_y.f``.

Sub-models of hf-slm types inside a model (the unit tokenizer, the vocoder) are built from their
classes, which are in the closure; the generated files register nothing with the Auto classes.
"""

from __future__ import annotations

import ast
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "RemoteCodeError",
    "flat_name",
    "import_closure",
    "remote_code_plan",
    "rewrite_module",
    "write_remote_code",
]

PACKAGE = "hf_slm"
HEADER = (
    "# Generated from hf-slm {version} by hf_slm.remote_code (source: {module}). Do not edit: change\n"
    "# the hf-slm module and regenerate (`hf-slm zoo install` / `zoo push` write it with the model).\n"
)


class RemoteCodeError(ValueError):
    """An hf-slm module that cannot be turned into remote code, with what to change."""


def flat_name(module: str) -> str:
    """The flat file (without ``.py``) of a dotted module: ``hf_slm.units.kmeans`` -> ``hf_slm_units_kmeans``."""
    return module.replace(".", "_")


def _default_root() -> Path:
    """The folder holding the ``hf_slm`` package (its parent)."""
    return Path(__file__).resolve().parents[1]


def _file(module: str, root: Path) -> Path | None:
    base = root.joinpath(*module.split("."))
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def _is_package(module: str, root: Path) -> bool:
    return (root.joinpath(*module.split(".")) / "__init__.py").is_file()


def _absolute(module: str | None, level: int, importer: str, importer_is_package: bool) -> str:
    """The absolute module of ``from <level dots><module> import ...`` written in ``importer``."""
    if level == 0:
        return module or ""
    parts = importer.split(".")
    base = parts if importer_is_package else parts[:-1]
    if level - 1 > len(base) - 1:
        raise RemoteCodeError(f"{importer}: a relative import goes above the {PACKAGE} package")
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _ours(module: str) -> bool:
    return module == PACKAGE or module.startswith(PACKAGE + ".")


@dataclass(frozen=True)
class _Target:
    """What one imported name is: a module (``name`` None) or a name defined in ``module``."""

    module: str
    name: str | None = None


def _resolve(module: str, name: str, root: Path, seen: tuple = ()) -> _Target:
    """Where ``from module import name`` really comes from: a submodule, or the module that binds
    ``name`` (a package's ``__init__`` re-exports are followed to their source)."""
    if (module, name) in seen:
        raise RemoteCodeError(f"circular re-export of {name!r} through {module}")
    path = _file(module, root)
    if path is None:
        raise RemoteCodeError(f"no module {module} under {root}")
    if not _is_package(module, root):
        return _Target(module, name)
    sub = f"{module}.{name}"
    if _file(sub, root) is not None:
        if _is_package(sub, root):
            raise RemoteCodeError(
                f"{sub} is a package: import the names you need from its modules (a package's "
                "__init__ is not copied into remote code)"
            )
        return _Target(sub)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            source = _absolute(node.module, node.level, module, True)
            for alias in node.names:
                if (alias.asname or alias.name) == name and _ours(source):
                    return _resolve(source, alias.name, root, (*seen, (module, name)))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname == name and _ours(alias.name):
                    return _module_target(alias.name, root)
    raise RemoteCodeError(
        f"{name!r} is defined in the package {module}'s __init__, not re-exported from one of its modules: "
        f"import it from the module that defines it (remote code holds modules, not packages)"
    )


def _module_target(module: str, root: Path) -> _Target:
    if _file(module, root) is None:
        raise RemoteCodeError(f"no module {module} under {root}")
    if _is_package(module, root):
        raise RemoteCodeError(
            f"`import {module}` binds a package: import names from its modules instead "
            "(a package's __init__ is not copied into remote code)"
        )
    return _Target(module)


def _alias(name: str, asname: str | None) -> str:
    return name if asname is None or asname == name else f"{name} as {asname}"


def _bind_module(module: str, asname: str) -> list[str]:
    """Statements binding the flat sibling of ``module`` to ``asname``: the first one is the
    ``from .x import`` form transformers follows to fetch the file, the second binds the module."""
    flat = flat_name(module)
    return [f"from .{flat} import __name__ as _{flat}__name__", f"from . import {_alias(flat, asname)}"]


def _dotted(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id, *reversed(parts)])
    return None


def rewrite_module(source: str, module: str, root: str | os.PathLike | None = None) -> tuple[str, list[str]]:
    """Rewrite the hf-slm imports of one module's source as relative imports of flat siblings.

    Args:
        source: the module's code.
        module: its dotted name (e.g. ``hf_slm.units.kmeans``), against which relative imports resolve.
        root: the folder holding the ``hf_slm`` package (default: the one this file belongs to).

    Returns:
        The new source and the hf-slm modules it imports (sorted), i.e. the files it needs beside it.
    """
    root = Path(root) if root is not None else _default_root()
    is_package = _is_package(module, root)
    tree = ast.parse(source)
    data = source.encode("utf-8")  # ast offsets are in UTF-8 bytes
    starts = [0]
    for line in data.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))

    def offset(line: int, col: int) -> int:
        return starts[line - 1] + col

    edits: list[tuple[int, int, str]] = []
    needed: set[str] = set()
    bare: set[str] = set()  # modules imported as `import hf_slm.x.y`: their uses are renamed

    for node in ast.walk(tree):
        statements: list[str] | None = None
        if isinstance(node, ast.ImportFrom):
            source_module = _absolute(node.module, node.level, module, is_package)
            if not _ours(source_module):
                continue
            if any(a.name == "*" for a in node.names):
                if _is_package(source_module, root):
                    raise RemoteCodeError(f"{module}: `from {source_module} import *` of a package")
                targets = [(_Target(source_module, "*"), None)]
            else:
                targets = [(_resolve(source_module, a.name, root), a.asname or a.name) for a in node.names]
            grouped: dict[str, list[str]] = {}
            statements = []
            for target, bound in targets:
                needed.add(target.module)
                if target.name is None:
                    statements += _bind_module(target.module, bound)
                else:
                    alias = "*" if target.name == "*" else _alias(target.name, bound)
                    grouped.setdefault(target.module, []).append(alias)
            statements = [
                f"from .{flat_name(m)} import {', '.join(names)}" for m, names in grouped.items()
            ] + statements
        elif isinstance(node, ast.Import):
            if not any(_ours(a.name) for a in node.names):
                continue
            others = [_alias(a.name, a.asname) for a in node.names if not _ours(a.name)]
            statements = [f"import {', '.join(others)}"] if others else []
            for a in node.names:
                if not _ours(a.name):
                    continue
                target = _module_target(a.name, root)
                needed.add(target.module)
                if a.asname is None:
                    bare.add(a.name)
                    statements += _bind_module(a.name, flat_name(a.name))
                else:
                    statements += _bind_module(a.name, a.asname)
        if statements is None:
            continue
        start, end = offset(node.lineno, node.col_offset), offset(node.end_lineno, node.end_col_offset)
        prefix = data[starts[node.lineno - 1] : start]
        if prefix.strip():
            raise RemoteCodeError(
                f"{module}, line {node.lineno}: put the hf-slm import on a line of its own (transformers "
                "finds sibling files by `from .x import` at the start of a line)"
            )
        indent = prefix.decode("utf-8")
        edits.append((start, end, ("\n" + indent).join(statements)))

    if bare:  # `import hf_slm.x.y` is used as `hf_slm.x.y.f`: that prefix becomes the flat module's name
        covered: set[int] = set()
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute) or id(node) in covered:
                continue
            dotted = _dotted(node)
            if dotted in bare:
                edits.append(
                    (
                        offset(node.lineno, node.col_offset),
                        offset(node.end_lineno, node.end_col_offset),
                        flat_name(dotted),
                    )
                )
                covered.update(id(n) for n in ast.walk(node))
        names = [n for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id == PACKAGE]
        renamed = {(s, e) for s, e, _ in edits}
        for n in names:
            span = offset(n.lineno, n.col_offset)
            if not any(s == span for s, _ in renamed):
                raise RemoteCodeError(
                    f"{module}, line {n.lineno}: `{PACKAGE}` is used other than as an imported module's "
                    "prefix: import the name from its module instead"
                )

    out = bytearray(data)
    for start, end, text in sorted(edits, reverse=True):
        out[start:end] = text.encode("utf-8")
    return out.decode("utf-8"), sorted(needed)


def import_closure(modules: list[str], root: str | os.PathLike | None = None) -> dict[str, str]:
    """Every hf-slm module the ``modules`` need (themselves included), each with its rewritten source.

    Returns:
        ``{dotted module: rewritten source}`` in a stable order (breadth first from ``modules``).
    """
    root = Path(root) if root is not None else _default_root()
    out: dict[str, str] = {}
    queue = list(modules)
    while queue:
        module = queue.pop(0)
        if module in out:
            continue
        path = _file(module, root)
        if path is None:
            raise RemoteCodeError(f"no module {module} under {root}")
        if path.name == "__init__.py":
            raise RemoteCodeError(f"{module} is a package: start from its modules")
        out[module], needed = rewrite_module(path.read_text(encoding="utf-8"), module, root)
        queue += [m for m in needed if m not in out]
    return out


@dataclass
class RemoteCodePlan:
    """What a model type needs as remote code: its modules and the ``auto_map`` entries."""

    model_type: str
    modules: list[str]  # entry modules (configuration, modeling, processing)
    config_auto_map: dict[str, str]
    processor_auto_map: dict[str, str]


def remote_code_plan(model_type: str) -> RemoteCodePlan | None:
    """The entry modules and ``auto_map`` of an hf-slm model type (as registered in ``hf_slm/auto.py``);
    None for a type of transformers' own (it needs no code)."""
    from hf_slm.auto import MODEL_REGISTRY

    spec = MODEL_REGISTRY.get(model_type)
    if spec is None:
        if model_type.startswith("hf_slm_"):
            raise RemoteCodeError(
                f"model_type {model_type!r} is not registered in hf_slm/auto.py (known: {sorted(MODEL_REGISTRY)})"
            )
        return None

    def ref(cls: type) -> str:
        if not _ours(cls.__module__):
            raise RemoteCodeError(f"{cls.__qualname__} is not defined in {PACKAGE} ({cls.__module__})")
        return f"{flat_name(cls.__module__)}.{cls.__name__}"

    modules = [spec.config_class.__module__, spec.model_class.__module__]
    config_map = {"AutoConfig": ref(spec.config_class)}
    config_map.update({name: ref(spec.model_class) for name in spec.auto_classes})
    processor_map = {}
    if spec.processor_class is not None:
        modules.append(spec.processor_class.__module__)
        processor_map["AutoProcessor"] = ref(spec.processor_class)
    return RemoteCodePlan(model_type, list(dict.fromkeys(modules)), config_map, processor_map)


def _write(path: Path, text: str) -> None:
    """Write by replacing the file (a symlink at ``path`` is replaced, never written through)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _set_auto_map(path: Path, auto_map: dict[str, str]) -> None:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    was_sorted = list(data) == sorted(data)
    data["auto_map"] = {**data.get("auto_map", {}), **auto_map}
    if was_sorted:
        data = dict(sorted(data.items()))
    _write(path, json.dumps(data, indent=2) + "\n")


def write_remote_code(folder: str | os.PathLike, model_type: str | None = None) -> list[str]:
    """Write the remote code of the model in ``folder`` (a copy of a zoo folder: it is modified).

    Writes one flat file per hf-slm module the model's configuration, modeling and processing modules
    need, and sets ``auto_map`` in ``config.json`` and (if the folder has one) ``processor_config.json``.

    Args:
        folder: the model folder, with its ``config.json``.
        model_type: the hf-slm model type (default: the one in ``config.json``).

    Returns:
        The files written (paths), the generated modules first; empty for a model type of
        transformers' own (a HuBERT encoder needs no code).
    """
    from hf_slm import __version__

    folder = Path(folder)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise RemoteCodeError(f"{folder} has no config.json")
    model_type = model_type or json.loads(config_file.read_text(encoding="utf-8")).get("model_type", "")
    plan = remote_code_plan(model_type)
    if plan is None:
        return []
    written = []
    for module, code in import_closure(plan.modules).items():
        path = folder / f"{flat_name(module)}.py"
        _write(path, HEADER.format(version=__version__, module=module) + code)
        written.append(str(path))
    _set_auto_map(config_file, plan.config_auto_map)
    written.append(str(config_file))
    processor_file = folder / "processor_config.json"
    if plan.processor_auto_map and processor_file.is_file():
        _set_auto_map(processor_file, plan.processor_auto_map)
        written.append(str(processor_file))
    return written
