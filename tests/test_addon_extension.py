"""The extension build: blender_manifest.toml passes the checks of `blender --command extension validate`,
broken manifests are refused with the field named, and the zip holds only the add-on, installable as a
package of its own."""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from dimo_engine.cli.main import main as dimo_main

REPO = Path(__file__).resolve().parents[1]
ALLOWED_TOP_LEVEL_IMPORTS = {"bpy", "bpy_extras", "mathutils", "numpy", "addon_utils", "gpu", "bmesh"}


def builder():
    from dimo_engine.cli.build_extension import _builder

    return _builder()


def test_repository_manifest_is_valid():
    manifest = builder().load_manifest(REPO / "blender_manifest.toml")
    assert manifest["type"] == "add-on" and manifest["id"] == "dimo_previs"
    assert len(manifest["tagline"]) <= 64
    assert set(manifest["permissions"]) == {"files", "network"}


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"tagline": "x" * 65}, "'tagline' is 65 characters long"),
        ({"tagline": "Re-enact motion."}, "'tagline' must not end with punctuation"),
        ({"blender_version_min": "4.1.0"}, "older than 4.2.0"),
        ({"license": ["GPL-3.0"]}, "must be an SPDX identifier"),
        ({"id": "dimo-previs"}, "must be a Python identifier"),
        ({"version": "1.0"}, "must be a semantic version"),
        ({"type": "addon"}, "'type' = 'addon'"),
        ({"permissions": {"network": "Talks to the engine."}}, "'permissions.network' must not end with punctuation"),
        ({"permissions": {"internet": "Talks to the engine"}}, "permission 'internet' is unknown"),
        ({"maintainer": None}, "'maintainer' is missing"),
    ],
)
def test_broken_manifests_are_refused_naming_the_field(change, expected):
    import tomllib

    manifest = tomllib.loads((REPO / "blender_manifest.toml").read_text())
    for key, value in change.items():
        if value is None:
            del manifest[key]
        else:
            manifest[key] = value
    problems = builder().manifest_problems(manifest)
    assert any(expected in problem for problem in problems), problems


def test_cli_refuses_a_broken_manifest_with_exit_code_2(tmp_path, capsys):
    manifest = tmp_path / "blender_manifest.toml"
    manifest.write_text((REPO / "blender_manifest.toml").read_text().replace('blender_version_min = "4.2.0"', 'blender_version_min = "3.6.0"'))
    assert dimo_main(["build-extension", "--manifest", str(manifest), "--output-dir", str(tmp_path)]) == 2
    assert "older than 4.2.0" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.zip"))


def _imported_modules(source: str) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module.split(".")[0])
    return modules


@pytest.mark.blender
def test_zip_holds_only_the_addon_and_installs_as_its_own_package(tmp_path):
    assert dimo_main(["build-extension", "--output-dir", str(tmp_path)]) == 0
    archive_path = tmp_path / "dimo_previs-0.1.0.zip"
    with zipfile.ZipFile(archive_path) as archive:
        names = archive.namelist()
        archive.extractall(tmp_path / "dimo_previs")
    assert "blender_manifest.toml" in names and "__init__.py" in names  # side by side at the root
    shipped_sources = {p.relative_to(REPO / "blender_addon").as_posix() for p in (REPO / "blender_addon").rglob("*.py")
                       if "__pycache__" not in p.parts and p.name != "build_extension.py"}
    assert {n for n in names if n.endswith(".py")} == shipped_sources
    assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".zip")) or n.startswith(("tests/", "dimo_engine/", "."))]
    assert "build_extension.py" not in names
    # Only bpy, numpy and the standard library inside Blender.
    for name in names:
        if name.endswith(".py"):
            foreign = _imported_modules((tmp_path / "dimo_previs" / name).read_text()) - ALLOWED_TOP_LEVEL_IMPORTS
            assert not foreign - set(sys.stdlib_module_names), f"{name} imports {foreign - set(sys.stdlib_module_names)}"
    # Installed under its own name (as Blender does, bl_ext.<repo>.dimo_previs), it registers and unregisters.
    script = (
        "import sys, bpy; sys.path.insert(0, sys.argv[1]); import dimo_previs as addon; addon.register();"
        "assert bpy.types.Scene.dimo and hasattr(bpy.types, 'DIMO_PT_main');"
        "assert addon.preferences.DIMO_AP_preferences.bl_idname == 'dimo_previs';"
        "addon.unregister(); assert not hasattr(bpy.types.Scene, 'dimo'); print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr
