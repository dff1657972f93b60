"""Entry point of the `dimo` command.

Each subcommand lives in its own module with two functions, `add_arguments(parser)` and
`run(args) -> int`. The engine's own commands are modules under `dimo_engine.cli`, and only the
chosen one is imported, so `dimo --help` stays fast and never loads torch. Other packages add
commands through the `dimo.commands` entry-point group (training's train, bench-views, ...: see
training/commands/), so the engine never imports them; those modules also carry `HELP`.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import sys

from dimo_engine.errors import InputError

# name -> (module under dimo_engine.cli, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "generate": ("generate", "re-enact a driving video with a reference character from one or more cameras"),
    "encode-motion": ("encode_motion", "compute a driving video's motion tokens once, for reuse with generate --motion"),
    "serve": ("serve", "run the engine's HTTP service for the Blender add-on (loopback, token)"),
    "info": ("info", "print the model, device, dtype and memory the engine would use"),
    "render-clips": ("render_clips", "render synthetic multi-view training clips with Blender (sharded, resumable)"),
    "contact-sheet": ("contact_sheet", "write a PNG of a rendered clip: views x frames with 2D joints"),
    "make-body": ("make_body", "write the procedural SMPL-H-compatible body model file"),
    "motions": ("motions", "list the procedural motion families and split, or write a motion (procedural or BVH) as .npz"),
    "camera": ("camera", "write a camera path file from a text phrase such as 'orbit left 90 degrees'"),
    "demo": ("demo", "the main job in one command: render a held-out motion, re-enact it from an orbiting camera, write a sheet"),
    "build-extension": ("build_extension", "validate blender_manifest.toml and zip the Blender extension (add-on only)"),
}


# Entry-point group through which installed packages add subcommands (name -> command module).
COMMAND_GROUP = "dimo.commands"


def _added_commands() -> dict[str, importlib.metadata.EntryPoint]:
    """The commands other packages declare in COMMAND_GROUP; the engine's own names win a clash."""
    return {entry.name: entry for entry in importlib.metadata.entry_points(group=COMMAND_GROUP)
            if entry.name not in COMMANDS}


def _build_parser(command: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dimo",
        description="DiMo for Blender: re-enact a driving video with any character, seen from your scene's cameras.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        if name == command:
            _add_command(sub, importlib.import_module(f"dimo_engine.cli.{module_name}"))
    for name, entry in _added_commands().items():
        module = entry.load()
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        if name == command:
            _add_command(sub, module)
    return parser


def _add_command(parser: argparse.ArgumentParser, module) -> None:
    module.add_arguments(parser)
    parser.set_defaults(_run=module.run)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = _build_parser(command)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args._run(args) or 0)
    except InputError as error:
        print(f"dimo {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dimo {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
