"""`dimo demo`: the main job in one command, offline and on a CPU: render a held-out motion and a
reference character with Blender, re-enact it from an orbiting, dollying camera with the default model,
and write the frames, MP4s and a driving | ground truth | DiMo sheet (logic in `dimo_engine.demo`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dimo_engine.cli.model_args import add_model_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("dimo-demo"),
                        help="output folder (default ./dimo-demo; an earlier demo there is replaced)")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's)")
    parser.add_argument("--seed", type=int, default=0, help="picks the motion, the two characters, the driving view and the noise")
    parser.add_argument("--frames", type=int, default=None,
                        help="frames to render and generate (default: two generation windows, 2.5 s at 12 fps)")
    add_model_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from dimo_engine.demo import DemoRenderFailed, DemoSettings, run_demo

    settings = DemoSettings(out=args.out, model=args.model, steps=args.steps, seed=args.seed, device=args.device,
                            dtype=args.dtype, frames=args.frames)
    print("dimo demo: stage times (this machine)")
    bar = None

    def on_progress(progress) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=progress.total_steps, desc="  generating", unit="step", leave=False, dynamic_ncols=True)
        bar.n = progress.step
        bar.refresh()

    def log(line: str) -> None:
        if bar is not None:
            bar.clear()  # a stage line must not land inside the progress bar's line
        print(line)

    try:
        result = run_demo(settings, log=log, on_progress=on_progress)
    except DemoRenderFailed as error:
        print(f"dimo demo: error: {error}", file=sys.stderr)
        return 1
    finally:
        if bar is not None:
            bar.close()
    out = result.out
    print(f"  {'total':<14} {result.total_seconds:6.1f} s  (CPU {result.total_cpu_seconds:6.1f} s)")
    if not result.trained:
        print("the DiMo frames are from an UNTRAINED model (random weights); install the default model for real results")
    print(f"{result.num_frames} frames at {result.fps:g} fps in {out}:")
    print(f"  DiMo frames   {out / 'dimo'}/0000.png ...  video {out / 'dimo.mp4'}")
    print(f"  sheet         {out / 'sheet.png'}  (driving | ground truth | DiMo)")
    print(f"  side by side  {out / 'side_by_side.mp4'}")
    print(f"  inputs        {out / 'driving'}/, {out / 'reference.png'}, {out / 'camera.json'}; ground truth {out / 'ground_truth'}/")
    return 0
