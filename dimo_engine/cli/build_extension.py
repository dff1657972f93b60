"""`dimo build-extension`: validate blender_manifest.toml and zip the Blender extension (add-on only).

The builder lives with the add-on (`blender_addon/build_extension.py`) and runs Blender's own extension tool
from the bpy wheel; it is loaded by file path so this command imports neither bpy nor torch.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

_BUILDER = Path(__file__).resolve().parents[2] / "blender_addon" / "build_extension.py"


def _builder():
    spec = importlib.util.spec_from_file_location("dimo_extension_builder", _BUILDER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def add_arguments(parser) -> None:
    parser.add_argument("--output-dir", default="dist", help="folder for <id>-<version>.zip (default: dist)")
    parser.add_argument("--manifest", default=None, help="manifest to use (default: the repository's blender_manifest.toml)")
    parser.add_argument("--validate-only", action="store_true", help="only check the manifest's fields")


def run(args) -> int:
    from dimo_engine.errors import InputError

    builder = _builder()
    manifest = args.manifest or str(builder.REPO_ROOT / builder.MANIFEST_NAME)
    try:
        if args.validate_only:
            builder.load_manifest(manifest)
            print(f"{manifest}: valid")
            return 0
        print(builder.build_extension(args.output_dir, manifest))
    except builder.ManifestError as error:
        raise InputError(str(error)) from None
    return 0
