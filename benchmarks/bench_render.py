"""Render speed of the synthetic clip renderer: frames per second per worker process at 128 px for
Cycles (few samples, with and without the denoiser) and Workbench, and the throughput of 2 shards
rendering side by side. Prints a Markdown table (copied into docs/rendering.md).

    python benchmarks/bench_render.py [--clips 1 --views 4 --frames 8 --resolution 128]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time

from dimo_engine.body import load_body_model
from dimo_engine.clip_plan import RenderSettings, plan_clips, write_plan


def _run_workers(plan_dirs: list[str]) -> tuple[float, list[float]]:
    """Start one worker per plan at once: (wall seconds until all are done, per-process rendering
    frames/s as the workers report it, scene building and Blender start excluded)."""
    start = time.perf_counter()
    workers = [subprocess.Popen([sys.executable, "-m", "blender_addon.clip_renderer.worker", plan],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) for plan in plan_dirs]
    outputs = [worker.communicate()[0] for worker in workers]
    wall = time.perf_counter() - start
    if any(worker.returncode for worker in workers):
        raise RuntimeError(f"a render worker failed (exit codes {[w.returncode for w in workers]})")
    rates = []
    for output in outputs:
        fields = [dict(item.split("=") for item in line.split()[2:]) for line in output.splitlines() if line.startswith("clip-done")]
        rates.append(sum(int(f["frames"]) for f in fields) / sum(float(f["render_seconds"]) for f in fields))
    return wall, rates


def measure(settings: RenderSettings, body_model, shards: int, folder: str) -> tuple[float, list[float]]:
    """(wall seconds, rendering frames/s of each process) for settings.clips clips per shard."""
    plans = []
    for shard in range(shards):
        root = os.path.join(folder, f"out_{settings.engine}_{settings.samples}_{settings.denoise}_{shard}")
        shutil.rmtree(root, ignore_errors=True)
        indices = list(range(shard * settings.clips, (shard + 1) * settings.clips))
        plan_settings = dataclasses.replace(settings, clips=settings.clips * shards)
        plans.append(write_plan(os.path.join(root, ".plan"), root, plan_settings, plan_clips(plan_settings, indices, body_model),
                                body_model, "dimo-smplh-procedural-v1"))
    return _run_workers(plans)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=1, help="clips per process")
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--resolution", type=int, default=128)
    args = parser.parse_args()
    body_model = load_body_model()
    base = RenderSettings(clips=args.clips, views=args.views, frames=args.frames, resolution=args.resolution, seed=11)
    configs = [
        ("Workbench, 8 AA samples", dict(engine="workbench", samples=8), 1),
        ("Cycles, 4 samples", dict(engine="cycles", samples=4), 1),
        ("Cycles, 4 samples + denoiser", dict(engine="cycles", samples=4, denoise=True), 1),
        ("Cycles, 16 samples", dict(engine="cycles", samples=16), 1),
        ("Workbench, 8 AA samples, 2 shards", dict(engine="workbench", samples=8, threads=1), 2),
        ("Cycles, 4 samples, 2 shards", dict(engine="cycles", samples=4, threads=1), 2),
    ]
    print(f"{args.clips} clip(s) x {args.views} views x {args.frames} frames per process, {args.resolution} px, "
          f"{os.cpu_count()} CPU cores. frames/s: rendering (set + person passes, PNG, annotations) per process, "
          f"scene building excluded; wall: whole run with Blender start and scene building\n")
    print("| setting | processes | frames/s per process | frames/s all processes | wall s |")
    print("| --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as folder:
        for label, overrides, shards in configs:
            wall, rates = measure(dataclasses.replace(base, **overrides), body_model, shards, folder)
            per_process = " / ".join(f"{rate:.2f}" for rate in rates)
            print(f"| {label} | {shards} | {per_process} | {sum(rates):.2f} | {wall:.1f} |", flush=True)


if __name__ == "__main__":
    main()
