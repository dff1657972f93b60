"""`dimo generate`: re-enact a driving video (or saved motion tokens) with a reference character,
seen from one or more cameras; writes a PNG sequence and an MP4 per camera.

Everything is read and checked before anything is written. The whole result set is written into
a hidden sibling `.<out>.partial` folder that replaces `--out` as a whole when complete, so `--out`
never holds half a result nor cameras of two runs.
"""

from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path

from blender_addon.core.atomic_io import replace_folder
from dimo_engine.cli.model_args import add_model_arguments, load_model_from_args
from dimo_engine.errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reference", type=Path, required=True, help="reference image of the character (PNG or JPEG)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--driving", type=Path, help="driving video (mp4, mov, webm, gif) or a folder of images")
    source.add_argument("--motion", type=Path, help="motion tokens from 'dimo encode-motion' (.safetensors)")
    parser.add_argument("--camera", dest="camera_specs", action="append", type=lambda value: ("file", value),
                        default=[], metavar="PATH.json", help="camera path file; repeat for more cameras")
    parser.add_argument("--camera-phrase", dest="camera_specs", action="append", type=lambda value: ("phrase", value),
                        metavar="TEXT", help="camera as a phrase, e.g. 'orbit left 90 degrees' (see docs/cameras.md)")
    parser.add_argument("--reference-camera", type=Path, default=None,
                        help="camera path file of the reference image (default: front, eye level); with it and an "
                             "RGBA reference, the character is drawn as tall as the reference shows it")
    parser.add_argument("--out", type=Path, required=True, help="output folder: camera_00/0000.png ..., camera_00/video.mp4, camera_00/camera.json")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's)")
    parser.add_argument("--guidance", type=float, default=None, help="motion guidance scale (default: the model's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--character-height", type=float, default=None, metavar="METRES",
                        help="how tall the character stands, crown to floor (default: as its reference image shows "
                             "it through --reference-camera; without that camera, as the driving video shows the body, "
                             "which a clip alone cannot measure: a typical body's height)")
    parser.add_argument("--fps", type=float, default=None, help="frame rate of a driving image folder (default 24)")
    parser.add_argument("--no-video", action="store_true", help="write PNG sequences only, no MP4")
    parser.add_argument("--background", default=None, metavar="PATH|COLOUR",
                        help="flat frames: composite the character layer over an image or a colour ('#808080'); "
                             "default: RGBA PNGs (alpha = the person) and an MP4 over grey")
    add_model_arguments(parser)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from dimo_engine.camera import camera_path_from_phrase, load_camera_path, save_camera_path
    from dimo_engine.driving import encode_driving, read_driving
    from dimo_engine.motion_file import load_motion_file, motion_num_frames
    from dimo_engine.reenact import GenerationSettings, conform_camera, reenact
    from dimo_engine.video_io import read_image, to_uint8, write_png_sequence, write_video

    if not args.camera_specs:
        raise InputError("no camera given; add --camera PATH.json or --camera-phrase 'orbit left 90 degrees'")
    out = args.out.expanduser().resolve()
    check_out_folder(out, args.out)
    settings = GenerationSettings.from_dict(
        {"num_inference_steps": args.steps, "motion_guidance_scale": args.guidance, "seed": args.seed,
         "character_height": args.character_height}, "command line")

    # Read and check every input before the model loads and before anything is written.
    from dimo_engine.layer_compositing import DEFAULT_BACKGROUND, background_plate, composite_layer

    if args.background is not None:
        background_plate(args.background, 1, 1)  # a bad colour or unreadable image fails before the model loads
    reference = read_image(args.reference)
    camera_files = {value: load_camera_path(value) for kind, value in args.camera_specs if kind == "file"}
    reference_camera = load_camera_path(args.reference_camera) if args.reference_camera else None
    # Decoded once, as a stream, at the model's fps and the size its encoders need; a clip longer than one
    # job generates is refused from its header, before any frame is decoded.
    driving = read_driving(args.driving, peek_model_fps(args), fps=args.fps) if args.driving is not None else None
    motion = load_motion_file(args.motion) if args.motion is not None else None

    pipe, model_path = load_model_from_args(args)
    config = pipe.config
    model_fps = float(config.fps)
    if motion is None:
        motion = encode_driving(pipe, *driving, source=f"driving video {args.driving}")
    num_frames = motion_num_frames(motion)
    cameras = []
    for kind, value in args.camera_specs:
        if kind == "file":
            cameras.append(conform_camera(camera_files[value], num_frames, model_fps, f"camera {value}"))
        else:
            cameras.append(camera_path_from_phrase(value, num_frames=num_frames, fps=model_fps,
                                                   width=int(config.width), height=int(config.height)))

    bar = tqdm(total=1, desc="generating", unit="step", dynamic_ncols=True)

    def on_progress(progress) -> None:
        bar.total = progress.total_steps
        bar.n = progress.step
        bar.set_postfix(frames=f"{progress.frames_done}/{progress.frames_total}", refresh=False)
        bar.refresh()

    result_set, previous = _sibling(out, "partial"), _sibling(out, "old")
    for leftover in (result_set, previous):  # from a run killed before it finished
        shutil.rmtree(leftover, ignore_errors=True)
    partial = [result_set / f"camera_{index:02d}" for index in range(len(cameras))]
    try:
        for folder, camera in zip(partial, cameras):
            folder.mkdir(parents=True)
            save_camera_path(camera, folder / "camera.json")

        def on_frames(camera_index: int, first: int, frames) -> None:
            if args.background is not None:
                frames = composite_layer(frames, args.background)
            write_png_sequence(frames, partial[camera_index], start=first)

        videos = reenact(pipe, reference, motion, cameras, reference_camera=reference_camera, settings=settings,
                         on_frames=on_frames, on_progress=on_progress)
        bar.close()
        if not args.no_video:
            for folder, frames in zip(partial, videos):
                flat = composite_layer(np.asarray(frames), args.background or DEFAULT_BACKGROUND)
                write_video(to_uint8(flat), folder / "video.mp4", fps=model_fps)
        # Only a complete result set replaces what was there before, and as a whole.
        replace_folder(result_set, out, aside=previous)
        for index, frames in enumerate(videos):
            print(f"{args.out / f'camera_{index:02d}'}: {len(frames)} frames at {model_fps:g} fps")
    finally:
        bar.close()
        shutil.rmtree(result_set, ignore_errors=True)
    return 0


def peek_model_fps(args: argparse.Namespace) -> float:
    """The model's frame rate from its model_index.json, so the driving video is read before the model loads."""
    import json

    from dimo_engine.cli.model_args import check_model_folder, resolve_model_path

    folder = resolve_model_path(args.model)
    check_model_folder(folder)
    return float(json.loads((folder / "model_index.json").read_text(encoding="utf-8")).get("fps", 12.0))


# What `dimo generate` writes into --out (and the hidden per-camera folders older versions left there).
_RESULT_ENTRY = re.compile(r"^\.?camera_[0-9]{2}(\.partial)?$")


def check_out_folder(out: Path, given: Path) -> None:
    """--out must be new, empty, or a previous result set (camera_NN folders only), which the run replaces."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {given} is a file; give a folder (it is created if missing)")
    if out == Path(out.anchor) or out == Path.cwd():
        raise InputError(f"--out {given} is the current or root folder; give a folder of its own, e.g. {given}/renders")
    foreign = sorted(entry.name for entry in out.iterdir() if not _RESULT_ENTRY.match(entry.name)) if out.is_dir() else []
    if foreign:
        raise InputError(f"--out {given} holds files that are not a 'dimo generate' result ({', '.join(foreign[:3])}"
                         f"{', ...' if len(foreign) > 3 else ''}), and a run replaces the whole folder; give a new or "
                         f"empty folder")


def _sibling(out: Path, kind: str) -> Path:
    return out.with_name(f".{out.name}.{kind}")
