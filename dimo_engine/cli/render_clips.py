"""`dimo render-clips`: render the synthetic view-rich training clips with Blender, one fresh `bpy`
worker process per shard, resuming where an earlier run stopped."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile


def add_arguments(parser) -> None:
    parser.add_argument("--clips", type=int, default=8, help="clips in the split (all shards together)")
    parser.add_argument("--views", type=int, default=4, help="views per clip: the driving view, then static ring and moving cameras")
    parser.add_argument("--frames", type=int, default=16, help="frames per clip")
    parser.add_argument("--fps", type=float, default=12.0)
    parser.add_argument("--resolution", type=int, default=128, help="square image size in pixels")
    parser.add_argument("--engine", choices=("cycles", "workbench"), default="cycles")
    parser.add_argument("--samples", type=int, default=8, help="Cycles samples (Workbench: anti-aliasing level)")
    parser.add_argument("--denoise", action="store_true", help="Cycles: run the denoiser")
    parser.add_argument("--split", choices=("train", "test"), default="train")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shard", default="0/1", help="i/n: render every n-th clip starting at i")
    parser.add_argument("--threads", type=int, default=0, help="render threads of the worker (0: all cores)")
    parser.add_argument("--layout", choices=("training", "benchmark"), default="training",
                        help="benchmark: the cross-view benchmark's fixed views (--views is ignored) and background plates")
    parser.add_argument("--out", required=True, help="dataset folder (created; an existing one is resumed)")


def _settings(args):
    from dimo_engine.clip_plan import RenderSettings

    return RenderSettings(
        clips=args.clips, views=args.views, frames=args.frames, fps=args.fps, resolution=args.resolution,
        engine=args.engine, samples=args.samples, denoise=args.denoise, split=args.split, seed=args.seed,
        threads=args.threads, layout=args.layout,
    ).validate()


def _write_dataset_record(root: str, settings, body_model_name: str) -> None:
    """Create dataset.json, or check that an existing one was rendered with the same settings."""
    from blender_addon.core.atomic_io import write_json_atomic
    from blender_addon.core.clip_format import DATASET_FORMAT, FORMAT_VERSION
    from dimo_engine.errors import InputError

    path = os.path.join(root, "dataset.json")
    record = {"format": DATASET_FORMAT, "version": FORMAT_VERSION, "body_model": body_model_name, **settings.dataset_record()}
    splits = {}
    if os.path.isfile(path):
        with open(path) as handle:
            existing = json.load(handle)
        differing = [key for key in record if existing.get(key) != record[key]]
        if differing:
            raise InputError(
                f"{path} was rendered with other settings ({', '.join(f'{k}={existing.get(k)!r}' for k in differing)}); "
                f"repeat those settings to resume, or choose a new --out."
            )
        splits = existing.get("splits", {})
    splits[settings.split] = {"clips": max(settings.clips, splits.get(settings.split, {}).get("clips", 0))}
    write_json_atomic(path, {**record, "splits": splits})


def _body_model_name(body_model) -> str:
    for attribute in ("name", "model_name"):
        value = getattr(body_model, attribute, None)
        if isinstance(value, str) and value:
            return value
    return "dimo-smplh-procedural-v1"


def run(args) -> int:
    from tqdm import tqdm

    from blender_addon.core.clip_format import is_clip_complete
    from dimo_engine.clip_plan import parse_shard, plan_clips, shard_indices, write_plan
    from dimo_engine.body import load_body_model

    settings = _settings(args)
    shard, num_shards = parse_shard(args.shard)
    root = os.path.abspath(args.out)
    os.makedirs(os.path.join(root, settings.split), exist_ok=True)
    body_model = load_body_model()
    body_model_name = _body_model_name(body_model)
    _write_dataset_record(root, settings, body_model_name)

    indices = shard_indices(settings.clips, shard, num_shards)
    todo = [index for index in indices if not is_clip_complete(root, settings.split, index)]
    progress = tqdm(total=len(indices), initial=len(indices) - len(todo), unit="clip", desc=f"render-clips {settings.split} shard {shard}/{num_shards}")
    if not todo:
        progress.close()
        print(f"all {len(indices)} clips of shard {shard}/{num_shards} are complete in {root}/{settings.split}")
        return 0

    prefix = f".plan_{settings.split}_{shard}of{num_shards}_"
    for stale in os.listdir(root):  # left by a killed run of this shard
        if stale.startswith(prefix):
            shutil.rmtree(os.path.join(root, stale), ignore_errors=True)
    plan_dir = tempfile.mkdtemp(prefix=prefix, dir=root)
    log_path = os.path.join(plan_dir, "worker.log")
    try:
        write_plan(plan_dir, root, settings, plan_clips(settings, todo, body_model), body_model, body_model_name)
        with open(log_path, "w") as log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "blender_addon.clip_renderer.worker", plan_dir],
                stdout=subprocess.PIPE, stderr=log, text=True,
            )
            try:
                for line in worker.stdout:
                    if line.startswith("clip-done"):
                        progress.update(1)
                code = worker.wait()
            except BaseException:
                worker.kill()
                worker.wait()
                raise
        progress.close()
        if code != 0:
            with open(log_path) as log:
                tail = log.read()[-3000:]
            print(tail, file=sys.stderr)
            print(f"dimo render-clips: the Blender worker failed (exit code {code}); run the same command again to resume.", file=sys.stderr)
            return 1
    finally:
        progress.close()
        shutil.rmtree(plan_dir, ignore_errors=True)
    print(f"rendered {len(todo)} clips into {root}/{settings.split}")
    return 0
