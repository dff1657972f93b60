"""The extension build goes through Blender's own tool (`blender_ext.py` from the bpy wheel): the repository's
manifest passes its validate, broken manifests are refused with Blender's message naming the field, and the
zip it builds holds only the add-on, passes validate again, and installs and enables with
`bpy.ops.extensions.package_install_files` in a throw-away Blender user folder."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from dimo_engine.cli.main import main as dimo_main

pytestmark = pytest.mark.blender  # Blender's extension tool ships in the bpy wheel

REPO = Path(__file__).resolve().parents[1]
ALLOWED_TOP_LEVEL_IMPORTS = {"bpy", "bpy_extras", "mathutils", "numpy", "addon_utils", "gpu", "bmesh"}


@pytest.fixture(scope="module")
def builder():
    """The builder the `dimo build-extension` command runs (loaded by file path, as that command does)."""
    from dimo_engine.cli.build_extension import _builder

    return _builder()


def test_the_tool_is_blenders_own_from_the_bpy_wheel(builder):
    script = builder.blender_ext_script()
    assert script.name == "blender_ext.py" and script.is_file()
    assert script.parts[-5:] == ("scripts", "addons_core", "bl_pkg", "cli", "blender_ext.py")
    assert "bpy" in script.parts


def test_repository_manifest_passes_blenders_validate(builder):
    manifest = builder.load_manifest(REPO / "blender_manifest.toml")
    assert manifest["type"] == "add-on" and manifest["id"] == "dimo_previs"
    assert set(manifest["permissions"]) == {"files", "network"}


def _broken_manifest(tmp_path: Path, change: dict) -> Path:
    manifest = tomllib.loads((REPO / "blender_manifest.toml").read_text())
    for key, value in change.items():
        if value is None:
            del manifest[key]
        else:
            manifest[key] = value
    lines = []
    tables = {key: value for key, value in manifest.items() if isinstance(value, dict)}
    for key, value in manifest.items():
        if key not in tables:
            lines.append(f"{key} = {json.dumps(value)}")
    for table, values in tables.items():
        lines.append(f"[{table}]")
        lines.extend(f"{key} = {json.dumps(value)}" for key, value in values.items())
    path = tmp_path / "blender_manifest.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"tagline": "x" * 65}, 'key "tagline" invalid: a value no longer than 64 characters expected'),
        ({"tagline": "Re-enact motion."}, 'key "tagline" invalid: alphanumeric suffix expected'),
        ({"id": "dimo-previs"}, 'key "id" invalid'),
        ({"version": "1.0"}, 'key "version" invalid: to be a semantic-version'),
        ({"type": "addon"}, 'key "type" invalid'),
        ({"blender_version_min": "four"}, 'key "blender_version_min" invalid'),
        ({"permissions": {"network": "Talks to the engine."}}, 'value of "network": alphanumeric suffix expected'),
        ({"permissions": {"internet": "Talks to the engine"}}, 'value of "internet" must be a value in'),
        ({"tags": ["Cameras"]}, 'found invalid tag "Cameras"'),  # Blender's own tag list, as its CLI uses
        ({"maintainer": None}, 'missing "maintainer"'),
    ],
)
def test_broken_manifests_are_refused_with_blenders_message(builder, tmp_path, change, expected):
    path = _broken_manifest(tmp_path, change)
    with pytest.raises(builder.ManifestError) as refused:
        builder.load_manifest(path)
    assert expected in str(refused.value), refused.value
    assert str(path) in str(refused.value)  # the file a person edits, not the staged copy
    assert "dimo-extension-" not in str(refused.value)


def test_cli_refuses_a_broken_manifest_with_exit_code_2(tmp_path, capsys):
    manifest = _broken_manifest(tmp_path, {"tagline": "Re-enact motion."})
    assert dimo_main(["build-extension", "--manifest", str(manifest), "--output-dir", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "Blender's extension build refused it" in error and 'key "tagline" invalid' in error, error
    assert not list(tmp_path.glob("*.zip")) and not list(tmp_path.glob(".*.zip"))
    assert dimo_main(["build-extension", "--manifest", str(manifest), "--validate-only"]) == 2
    assert "Blender's extension validate refused it" in capsys.readouterr().err


def test_a_folder_that_is_no_python_package_is_refused(builder, tmp_path):
    (tmp_path / "empty_addon").mkdir()
    with pytest.raises(builder.ManifestError, match='missing "__init__.*" file'):
        builder.build_extension(tmp_path / "out", REPO / "blender_manifest.toml", tmp_path / "empty_addon")


def _imported_modules(source: str) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module.split(".")[0])
    return modules


INSTALL_AND_ENABLE = """
import sys, bpy, addon_utils
zip_path, user_dir = sys.argv[1], sys.argv[2]
repo = next(repo for repo in bpy.context.preferences.extensions.repos if repo.module == "user_default")
assert repo.directory.startswith(user_dir), repo.directory  # a throw-away user folder, nothing else touched
assert bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True) == {"FINISHED"}
module = "bl_ext.user_default.dimo_previs"
assert module in bpy.context.preferences.addons, list(bpy.context.preferences.addons.keys())
assert bpy.context.preferences.addons[module].preferences is not None  # preferences under the package's name
assert hasattr(bpy.types.Scene, "dimo") and hasattr(bpy.types, "DIMO_PT_main")
addon_utils.disable(module, default_set=True)
assert not hasattr(bpy.types.Scene, "dimo") and not hasattr(bpy.types, "DIMO_PT_main")
print("installed", repo.directory)
"""


def test_the_built_zip_validates_holds_only_the_addon_and_installs_and_enables(builder, tmp_path):
    assert dimo_main(["build-extension", "--output-dir", str(tmp_path)]) == 0
    archive_path = tmp_path / "dimo_previs-0.1.0.zip"
    assert "Success" in builder.validate(archive_path)  # Blender's validate, on the archive itself

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

    # Installed the way Blender installs a downloaded extension, into a user folder made for this test.
    user_dir = tmp_path / "blender_user"
    environment = {**os.environ, "BLENDER_USER_RESOURCES": str(user_dir)}
    for kind in ("CONFIG", "SCRIPTS", "EXTENSIONS", "DATAFILES"):
        environment[f"BLENDER_USER_{kind}"] = str(user_dir / kind.lower())
    result = subprocess.run([sys.executable, "-c", INSTALL_AND_ENABLE, str(archive_path), str(user_dir)],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path, env=environment)
    assert result.returncode == 0 and "installed" in result.stdout, result.stdout + result.stderr
    installed = user_dir / "extensions" / "user_default" / "dimo_previs"
    assert (installed / "__init__.py").is_file() and (installed / "blender_manifest.toml").is_file()
