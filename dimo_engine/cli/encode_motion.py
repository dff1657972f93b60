"""`dimo encode-motion VIDEO --out motion.safetensors`: compute a driving video's motion tokens once,
to reuse with `dimo generate --motion` for any number of cameras and characters."""

from __future__ import annotations

import argparse
from pathlib import Path

from dimo_engine.cli.model_args import add_model_arguments, load_model_from_args
from dimo_engine.errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", type=Path, help="driving video (mp4, mov, webm, gif) or a folder of images")
    parser.add_argument("--out", type=Path, required=True, help="motion tokens file to write (.safetensors)")
    parser.add_argument("--fps", type=float, default=None, help="frame rate of an image folder (default 24)")
    add_model_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from dimo_engine.cli.generate import peek_model_fps
    from dimo_engine.driving import encode_driving, read_driving

    if args.out.suffix != ".safetensors":
        raise InputError(f"--out {args.out} should end in .safetensors; pick a name like motion.safetensors")
    frames, fps = read_driving(args.video, peek_model_fps(args), fps=args.fps)
    pipe, _ = load_model_from_args(args)
    motion = encode_driving(pipe, frames, fps, source=f"driving video {args.video}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    motion.save(args.out)  # written to a temporary name and renamed
    print(f"{args.out}: motion tokens for {motion.body.shape[1]} frames at {float(pipe.config.fps):g} fps "
          f"(body {tuple(motion.body.shape)}, hands {tuple(motion.hands.shape)})")
    return 0
