"""Dependencies point one way: the add-on's core <- the engine <- training. Importing the engine never
loads Blender, the core needs only numpy and the standard library, and training's `dimo` commands
reach the CLI through the `dimo.commands` entry-point group rather than an engine import."""

from __future__ import annotations

import ast
import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLENDER_MODULES = {"bpy", "mathutils", "bmesh", "addon_utils", "bl_ui", "bl_operators", "gpu", "blf"}
TRAINING_COMMANDS = {"train", "train-vae", "cache-latents", "probe-conditions", "bench-views"}


def test_importing_the_engine_does_not_load_blender():
    script = ("import sys\n"
              "import dimo_engine.pipelines, dimo_engine.camera, dimo_engine.server, dimo_engine.clip_plan\n"
              "print(sorted(name for name in sys.modules if name.split('.')[0] in ('bpy', 'training')))\n"
              "assert 'bpy' not in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"importing the engine loaded: {result.stdout.strip()}\n{result.stderr[-2000:]}"
    assert result.stdout.strip() == "[]"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file, at the top or inside functions; relative
    imports are resolved, and `from package import name` counts as `package.name` when that is a module."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.append((node.lineno, candidate if _is_module(candidate) else base))
    return sorted(set(found))


def _sources(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def _violations(folder: str, forbidden) -> list[str]:
    return [f"{path.relative_to(ROOT)}:{line} imports {name}"
            for path in _sources(folder) for line, name in imported_modules(path) if forbidden(name)]


def _top(name: str) -> str:
    return name.split(".")[0]


def _in(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_the_addon_core_imports_only_numpy_the_standard_library_and_itself():
    allowed = set(sys.stdlib_module_names) | {"numpy"}
    problems = _violations("blender_addon/core", lambda name: not (
        _in(name, "blender_addon.core") or (_top(name) in allowed and _top(name) != "blender_addon")))
    assert not problems, "blender_addon/core must stay bpy-free and know neither engine nor training:\n" + "\n".join(problems)


def test_the_engine_reaches_the_addon_only_through_its_core_and_never_imports_training():
    problems = _violations("dimo_engine", lambda name: _top(name) in BLENDER_MODULES | {"training"} or (
        _top(name) == "blender_addon" and not _in(name, "blender_addon.core")))
    assert not problems, "dimo_engine may import blender_addon.core only, and no training:\n" + "\n".join(problems)


def test_training_never_imports_blender():
    problems = _violations("training", lambda name: _top(name) in BLENDER_MODULES or (
        _top(name) == "blender_addon" and not _in(name, "blender_addon.core")))
    assert not problems, "training may import the engine and blender_addon.core, not Blender:\n" + "\n".join(problems)


def test_the_addon_never_imports_the_engine_or_training():
    problems = _violations("blender_addon", lambda name: _top(name) in ("dimo_engine", "training"))
    assert not problems, "the add-on runs inside Blender, without the engine:\n" + "\n".join(problems)


def test_the_rule_sees_relative_and_nested_imports():
    """The checker itself: a relative import resolves to its absolute module, and an import inside a
    function counts like one at the top."""
    path = ROOT / "blender_addon" / "clip_renderer" / "worker.py"
    names = {name for _, name in imported_modules(path)}
    assert {"bpy", "blender_addon.core.camera_path", "blender_addon.core.appearance", "blender_addon.camera_export"} <= names
    nested = {name for _, name in imported_modules(ROOT / "dimo_engine" / "camera.py")}
    assert "blender_addon.core.camera_phrases" in nested  # imported inside camera_path_from_phrase


def test_training_commands_reach_the_cli_through_entry_points():
    from dimo_engine.cli.main import COMMAND_GROUP, COMMANDS

    entries = {entry.name: entry for entry in importlib.metadata.entry_points(group=COMMAND_GROUP)}
    if not TRAINING_COMMANDS <= set(entries):
        pytest.fail(f"the {COMMAND_GROUP!r} entry points lack {sorted(TRAINING_COMMANDS - set(entries))}; "
                    f"run `pip install -e .` again so pyproject.toml's entry points are installed")
    assert not TRAINING_COMMANDS & set(COMMANDS)
    for name in TRAINING_COMMANDS:
        module = entries[name].load()
        assert _in(module.__name__, "training.commands")
        assert module.HELP and callable(module.add_arguments) and callable(module.run)
