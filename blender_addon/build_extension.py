"""Build the Blender extension zip the way `blender --command extension build` does, without a Blender
binary: check blender_manifest.toml's required fields, then zip the manifest and the add-on's files
(no tests, caches or build tooling) with the manifest at the zip root next to `__init__.py`.

Standard library only; run it as `python blender_addon/build_extension.py [--output-dir DIR]`
or `dimo build-extension`.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import re
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

ADDON_DIR = Path(__file__).resolve().parent
REPO_ROOT = ADDON_DIR.parent
MANIFEST_NAME = "blender_manifest.toml"
MIN_BLENDER_VERSION = (4, 2, 0)
TAGLINE_MAX = 64
PERMISSION_REASON_MAX = 64
KNOWN_PERMISSIONS = {"files", "network", "clipboard", "camera", "microphone"}
# The add-on tags Blender's extension platform accepts.
KNOWN_ADDON_TAGS = {
    "3D View", "Add Curve", "Add Mesh", "Animation", "Bake", "Camera", "Compositing", "Development",
    "Game Engine", "Geometry Nodes", "Grease Pencil", "Import-Export", "Lighting", "Material",
    "Modeling", "Mesh", "Node", "Object", "Paint", "Pipeline", "Physics", "Render", "Rigging",
    "Scene", "Sculpt", "Sequencer", "System", "Text Editor", "Tracking", "User Interface", "UV",
}
# Never shipped, whatever the manifest says: build tooling and byte code.
ALWAYS_EXCLUDED = ("__pycache__/", "*.pyc", "*.pyo", ".*", "/build_extension.py", "*.zip", "tests/")
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")
PUNCTUATION_ENDINGS = tuple(".,;:!?")


class ManifestError(ValueError):
    """The manifest breaks Blender's rules; the message lists every problem, one sentence each."""


def _version_tuple(text: str) -> tuple[int, ...] | None:
    parts = str(text).split(".")
    if not 1 <= len(parts) <= 3 or not all(part.isdigit() for part in parts):
        return None
    return tuple(int(part) for part in parts) + (0,) * (3 - len(parts))


def _check_id(value) -> str | None:
    if not isinstance(value, str) or not value.isidentifier():
        return f"'id' = {value!r} must be a Python identifier, like 'dimo_previs'."
    if "__" in value or value.startswith("_") or value.endswith("_"):
        return f"'id' = {value!r} must not start or end with '_' nor contain '__'."
    return None


def _check_short_text(field: str, value, limit: int) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return f"'{field}' must be a non-empty string."
    if len(value) > limit:
        return f"'{field}' is {len(value)} characters long; shorten it to at most {limit}."
    if value.rstrip().endswith(PUNCTUATION_ENDINGS):
        return f"'{field}' must not end with punctuation ({value[-1]!r}); remove it."
    return None


def manifest_problems(manifest: dict) -> list[str]:
    """Every rule of Blender's `extension validate` that `manifest` breaks (empty when valid)."""
    problems: list[str] = []
    required = ("schema_version", "id", "version", "name", "tagline", "maintainer", "type", "blender_version_min", "license")
    for field in required:
        if field not in manifest:
            problems.append(f"'{field}' is missing; add it to {MANIFEST_NAME}.")
    if "schema_version" in manifest and not SEMVER.match(str(manifest["schema_version"])):
        problems.append(f"'schema_version' = {manifest['schema_version']!r} must be a version like \"1.0.0\".")
    if "id" in manifest and (problem := _check_id(manifest["id"])):
        problems.append(problem)
    if "version" in manifest and not (isinstance(manifest["version"], str) and SEMVER.match(manifest["version"])):
        problems.append(f"'version' = {manifest['version']!r} must be a semantic version like \"0.1.0\".")
    if "name" in manifest and (not isinstance(manifest["name"], str) or not manifest["name"].strip()):
        problems.append("'name' must be a non-empty string.")
    if "tagline" in manifest and (problem := _check_short_text("tagline", manifest["tagline"], TAGLINE_MAX)):
        problems.append(problem)
    if "maintainer" in manifest and (not isinstance(manifest["maintainer"], str) or not manifest["maintainer"].strip()):
        problems.append("'maintainer' must be a non-empty string, like \"Name <email>\".")
    if "type" in manifest and manifest["type"] not in ("add-on", "theme"):
        problems.append(f"'type' = {manifest['type']!r} must be \"add-on\" or \"theme\".")
    if "blender_version_min" in manifest:
        minimum = _version_tuple(manifest["blender_version_min"])
        if minimum is None:
            problems.append(f"'blender_version_min' = {manifest['blender_version_min']!r} must be a version like \"4.2.0\".")
        elif minimum < MIN_BLENDER_VERSION:
            problems.append(f"'blender_version_min' = {manifest['blender_version_min']!r} is older than 4.2.0, the first Blender with extensions.")
        elif "blender_version_max" in manifest:
            maximum = _version_tuple(manifest["blender_version_max"])
            if maximum is None or maximum <= minimum:
                problems.append("'blender_version_max' must be a version after 'blender_version_min'.")
    if "license" in manifest:
        licenses = manifest["license"]
        if not isinstance(licenses, list) or not licenses:
            problems.append("'license' must be a non-empty list like [\"SPDX:GPL-3.0-or-later\"].")
        else:
            for entry in licenses:
                if not (isinstance(entry, str) and entry.startswith("SPDX:") and len(entry) > 5):
                    problems.append(f"'license' entry {entry!r} must be an SPDX identifier written \"SPDX:<id>\".")
    permissions = manifest.get("permissions", {})
    if not isinstance(permissions, dict):
        problems.append("'permissions' must be a table of permission = \"reason\".")
    else:
        for name, reason in permissions.items():
            if name not in KNOWN_PERMISSIONS:
                problems.append(f"permission '{name}' is unknown; use one of {', '.join(sorted(KNOWN_PERMISSIONS))}.")
            elif problem := _check_short_text(f"permissions.{name}", reason, PERMISSION_REASON_MAX):
                problems.append(problem)
    tags = manifest.get("tags", [])
    if manifest.get("type") == "add-on" and isinstance(tags, list):
        for tag in tags:
            if tag not in KNOWN_ADDON_TAGS:
                problems.append(f"tag {tag!r} is not one of Blender's add-on tags; pick from {', '.join(sorted(KNOWN_ADDON_TAGS))}.")
    return problems


def load_manifest(path: str | os.PathLike = REPO_ROOT / MANIFEST_NAME) -> dict:
    """Read and validate the manifest; raises ManifestError listing every problem."""
    path = Path(path)
    try:
        manifest = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"{path} does not exist; the extension needs a {MANIFEST_NAME} at the repository root.") from None
    except tomllib.TOMLDecodeError as error:
        raise ManifestError(f"{path} is not valid TOML ({error}); fix the syntax.") from None
    problems = manifest_problems(manifest)
    if problems:
        raise ManifestError(f"{path}: " + " ".join(problems))
    return manifest


def _matches(relative: str, is_dir: bool, patterns) -> bool:
    """gitignore-style subset used by Blender's `paths_exclude_pattern`: 'dir/', '/anchored', globs."""
    name = relative.rsplit("/", 1)[-1]
    for pattern in patterns:
        directory_only = pattern.endswith("/")
        pattern = pattern.rstrip("/")
        if directory_only and not is_dir:
            continue
        if pattern.startswith("/"):
            if fnmatch.fnmatchcase(relative, pattern[1:]):
                return True
        elif fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(relative, pattern):
            return True
    return False


def addon_files(addon_dir: Path = ADDON_DIR, exclude_patterns=()) -> list[Path]:
    """The files that ship, relative to the add-on folder, sorted."""
    patterns = tuple(ALWAYS_EXCLUDED) + tuple(exclude_patterns)
    files: list[Path] = []
    for folder, dirnames, filenames in os.walk(addon_dir):
        folder_path = Path(folder)
        relative_folder = folder_path.relative_to(addon_dir).as_posix()
        prefix = "" if relative_folder == "." else relative_folder + "/"
        dirnames[:] = sorted(d for d in dirnames if not _matches(prefix + d, True, patterns))
        for filename in sorted(filenames):
            if not _matches(prefix + filename, False, patterns):
                files.append(Path(prefix + filename))
    return files


def build_extension(output_dir: str | os.PathLike, manifest_path: str | os.PathLike = REPO_ROOT / MANIFEST_NAME,
                    addon_dir: str | os.PathLike = ADDON_DIR) -> Path:
    """Validate the manifest and write `<output_dir>/<id>-<version>.zip`; returns its path."""
    manifest_path, addon_dir, output_dir = Path(manifest_path), Path(addon_dir), Path(output_dir)
    manifest = load_manifest(manifest_path)
    if not (addon_dir / "__init__.py").is_file():
        raise ManifestError(f"{addon_dir} has no __init__.py; point the build at the add-on folder.")
    exclude = manifest.get("build", {}).get("paths_exclude_pattern", [])
    output_dir.mkdir(parents=True, exist_ok=True)
    target = output_dir / f"{manifest['id']}-{manifest['version']}.zip"
    # Written under a temporary name in the same folder, renamed when complete.
    handle, partial = tempfile.mkstemp(prefix=f".{target.stem}-", suffix=".zip.partial", dir=output_dir)
    os.close(handle)
    try:
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.write(manifest_path, arcname=MANIFEST_NAME)
            for relative in addon_files(addon_dir, exclude):
                if relative.as_posix() == MANIFEST_NAME:
                    continue
                archive.write(addon_dir / relative, arcname=relative.as_posix())
        os.replace(partial, target)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Validate blender_manifest.toml and build the DiMo extension zip.")
    parser.add_argument("--output-dir", default=str(REPO_ROOT / "dist"), help="folder for the zip (default: dist/)")
    parser.add_argument("--manifest", default=str(REPO_ROOT / MANIFEST_NAME))
    parser.add_argument("--validate-only", action="store_true", help="only check the manifest")
    args = parser.parse_args(argv)
    try:
        if args.validate_only:
            load_manifest(args.manifest)
            print(f"{args.manifest}: valid")
            return 0
        target = build_extension(args.output_dir, args.manifest)
    except ManifestError as error:
        print(f"build-extension: error: {error}", file=sys.stderr)
        return 2
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
