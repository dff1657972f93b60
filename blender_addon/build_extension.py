"""Build and validate the Blender extension zip with Blender's own extension tool, so the rules are Blender's
and not a copy of them: `blender_ext.py`, the script behind `blender --command extension build / validate`,
ships inside the bpy wheel (`bpy/<version>/scripts/addons_core/bl_pkg/cli/blender_ext.py`) and runs on the
standard library, so this module runs it with the current Python; bpy is never imported.

The tool wants the manifest inside the package folder; the product card keeps it at the repository root, so
`blender_addon/` and the manifest are staged together in a temporary folder first. What ships is decided by
the manifest's `[build] paths_exclude_pattern` (this file is excluded there).

Run it as `python blender_addon/build_extension.py [--output-dir DIR] [--validate-only]`, or `dimo build-extension`.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ADDON_DIR = Path(__file__).resolve().parent
REPO_ROOT = ADDON_DIR.parent
MANIFEST_NAME = "blender_manifest.toml"
BLENDER_EXT = "scripts/addons_core/bl_pkg/cli/blender_ext.py"  # under bpy/<version>/ in the wheel
# The tag list `blender --command extension build` checks against (it passes this file as --valid-tags).
VALID_TAGS = "scripts/modules/_bpy_internal/extensions/tags.py"  # under bpy/<version>/ too


class ManifestError(ValueError):
    """Blender's extension tool refused the manifest or the package; the message is the tool's own."""


def blender_ext_script() -> Path:
    """Where the bpy wheel keeps Blender's extension tool (found without importing bpy)."""
    spec = importlib.util.find_spec("bpy")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        found = sorted(Path(location).glob(f"*/{BLENDER_EXT}"))
        if found:
            return found[-1]
    raise ManifestError("Blender's extension tool (blender_ext.py) ships with the bpy wheel, which is not installed "
                        "here" + (f" (no */{BLENDER_EXT} under {', '.join(locations)})" if locations else "")
                        + "; install it with `pip install bpy==5.0.1`.")


def _tags_arguments(script: Path) -> list[str]:
    tags = script.parents[len(Path(BLENDER_EXT).parts) - 1] / VALID_TAGS
    return ["--valid-tags", str(tags)] if tags.is_file() else []


def run_blender_ext(*arguments: str, readable_paths: dict[str, str] | None = None) -> str:
    """Run `blender_ext.py <arguments>` with this Python; its output, or ManifestError with that output (staged
    paths replaced by the ones a person knows, per `readable_paths`)."""
    script = blender_ext_script()
    subcommand, *rest = arguments
    result = subprocess.run([sys.executable, str(script), subcommand, *_tags_arguments(script), *rest],
                            capture_output=True, text=True, timeout=300)
    output = "\n".join(part.strip() for part in (result.stdout, result.stderr) if part.strip())
    for staged, readable in (readable_paths or {}).items():
        output = output.replace(staged, readable)
    if result.returncode != 0:
        message = " ".join(line.removeprefix("FATAL_ERROR: ").strip() for line in output.splitlines() if line.strip())
        raise ManifestError(f"Blender's extension {subcommand} refused it: {message or f'exit code {result.returncode}'}")
    return output


@contextlib.contextmanager
def staged_source(manifest_path: str | os.PathLike, addon_dir: str | os.PathLike = ADDON_DIR):
    """A temporary package folder: a copy of the add-on with the manifest beside its `__init__.py`. Yields
    (folder, {staged path: real path}) for readable messages."""
    manifest_path, addon_dir = Path(manifest_path).resolve(), Path(addon_dir).resolve()
    if not manifest_path.is_file():
        raise ManifestError(f"{manifest_path} does not exist; the extension needs a {MANIFEST_NAME} at the repository root.")
    if not addon_dir.is_dir():
        raise ManifestError(f"{addon_dir} is not a folder; point the build at the add-on folder.")
    with tempfile.TemporaryDirectory(prefix="dimo-extension-") as folder:
        source = Path(folder) / addon_dir.name
        shutil.copytree(addon_dir, source)
        shutil.copyfile(manifest_path, source / MANIFEST_NAME)
        yield source, {str(source / MANIFEST_NAME): str(manifest_path), str(source): str(addon_dir)}


def validate(path: str | os.PathLike) -> str:
    """`blender_ext.py validate` on a built zip or a package folder; Blender's message, or ManifestError."""
    return run_blender_ext("validate", str(Path(path).resolve()))


def load_manifest(manifest_path: str | os.PathLike = REPO_ROOT / MANIFEST_NAME,
                  addon_dir: str | os.PathLike = ADDON_DIR) -> dict:
    """Validate the manifest with Blender's tool (staged with the add-on, as it ships) and return it parsed."""
    with staged_source(manifest_path, addon_dir) as (source, readable):
        run_blender_ext("validate", str(source), readable_paths=readable)
    return tomllib.loads(Path(manifest_path).read_text(encoding="utf-8"))


def build_extension(output_dir: str | os.PathLike, manifest_path: str | os.PathLike = REPO_ROOT / MANIFEST_NAME,
                    addon_dir: str | os.PathLike = ADDON_DIR) -> Path:
    """`blender_ext.py build`: validate and write `<output_dir>/<id>-<version>.zip` (the tool writes it under a
    temporary name and renames it when complete); returns its path."""
    output_dir = Path(output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    with staged_source(manifest_path, addon_dir) as (source, readable):
        run_blender_ext("build", "--source-dir", str(source), "--output-dir", str(output_dir), readable_paths=readable)
        manifest = tomllib.loads((source / MANIFEST_NAME).read_text(encoding="utf-8"))
    target = output_dir / f"{manifest['id']}-{manifest['version']}.zip"
    if not target.is_file():
        raise ManifestError(f"Blender's extension build reported success but wrote no {target}; see its output above.")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Validate blender_manifest.toml and build the DiMo extension zip "
                                                 "with Blender's extension tool.")
    parser.add_argument("--output-dir", default=str(REPO_ROOT / "dist"), help="folder for the zip (default: dist/)")
    parser.add_argument("--manifest", default=str(REPO_ROOT / MANIFEST_NAME))
    parser.add_argument("--validate-only", action="store_true", help="only validate the manifest")
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
