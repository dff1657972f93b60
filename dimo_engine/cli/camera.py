"""`dimo camera`: write a camera path file from a text phrase ("orbit left 90 degrees while dolly in"),
in the character frame; the grammar is in docs/cameras.md."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--phrase", required=True, help="camera moves, e.g. 'orbit left 90 degrees while dolly in'")
    parser.add_argument("--out", type=Path, required=True, help="camera path JSON file to write")
    parser.add_argument("--frames", type=int, default=17, help="number of frames (default: 17, the model's)")
    parser.add_argument("--fps", type=float, default=12.0, help="frames per second (default: 12)")
    parser.add_argument("--width", type=int, default=128, help="image width in pixels (default: 128)")
    parser.add_argument("--height", type=int, default=128, help="image height in pixels (default: 128)")
    parser.add_argument("--distance", type=float, default=3.5, help="start distance to the target in metres")
    parser.add_argument("--azimuth", type=float, default=0.0,
                        help="start azimuth in degrees: 0 in front of the character, 90 on its left")
    parser.add_argument("--elevation", type=float, default=5.0, help="start elevation in degrees above the target")
    parser.add_argument("--target-height", type=float, default=0.95, help="height of the look-at point in metres")
    parser.add_argument("--fov", type=float, default=40.0, help="vertical field of view in degrees at the start")
    parser.add_argument("--seed", type=int, default=0, help="seed of the hand-held shake")


def run(args: argparse.Namespace) -> int:
    from dimo_engine.camera import camera_path_from_phrase, save_camera_path
    from dimo_engine.errors import InputError

    if args.frames < 1:
        raise InputError(f"--frames is {args.frames}; give at least 1 frame")
    if not 0.0 < args.fov < 180.0:
        raise InputError(f"--fov is {args.fov} degrees; give a field of view between 0 and 180")
    camera_path = camera_path_from_phrase(
        args.phrase, num_frames=args.frames, fps=args.fps, width=args.width, height=args.height,
        distance=args.distance, azimuth_deg=args.azimuth, elevation_deg=args.elevation,
        target=(0.0, 0.0, args.target_height), vertical_fov_deg=args.fov, seed=args.seed)
    save_camera_path(camera_path, args.out)
    start, end = camera_path.centers[0], camera_path.centers[-1]
    print(f"wrote {args.out}: {camera_path.num_frames} frames at {camera_path.fps:g} fps, "
          f"{camera_path.width}x{camera_path.height} px, camera from {(start.round(2) + 0.0).tolist()} "
          f"to {(end.round(2) + 0.0).tolist()} m (character frame)")
    return 0
