"""Benchmark of the default model (character layer, 64 px crops): one training step of the bare generator next to one
with the motion branch (the body and hand encoders on the driving crops, the projection and splat of the tokens, and
the body proxy when the shipped model reads it), measured in the same run, in turns, and printed as a ratio; and
sampling time per generated frame.

Run: `python benchmarks/bench_character.py [--batch 16] [--repeats 10] [--threads 2]`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from bench_model import timed, timed_pair  # the benchmarks folder is on the path when a benchmark runs as a script
from blender_addon.core.camera_rigs import intrinsics_from_fov, look_at
from dimo_engine.character_layer import target_boxes
from dimo_engine.pipelines.pipeline_dimo_character import create_character_pipeline, motion_from_crops, token_anchors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    shipped = Path(__file__).resolve().parents[1] / "dimo_engine" / "weights" / "default"
    index, body = shipped / "model_index.json", shipped / "body_encoder" / "config.json"
    body_proxy = bool(json.loads(index.read_text()).get("body_proxy", False)) if index.is_file() else False
    geometry = json.loads(body.read_text()).get("geometry", "global") if body.is_file() else "global"
    # the shipped model's layout, random weights
    pipe = create_character_pipeline(seed=0, body_proxy=body_proxy, encoder_geometry=geometry)
    n, size = args.batch, int(pipe.config.crop_size)
    channels = pipe.generator.config.in_channels - 8
    noisy, reference = torch.randn(n, 4, size, size), torch.randn(n, 4, size, size)
    target = torch.randn(n, 4, size, size)
    timesteps = torch.rand(n) * 1000
    crops, boxes, hand_crops = torch.rand(n, 1, 3, 64, 64), torch.zeros(n, 1, 3), torch.rand(n, 1, 2, 3, 16, 16)
    eye = np.array([0.0, -5.0, 1.2])
    K = torch.from_numpy(intrinsics_from_fov(40.0, 128, 128)).float().expand(n, 3, 3)
    world_to_camera = torch.from_numpy(look_at(eye, (0.0, 0.0, 0.9))).float().expand(n, 4, 4)
    parameters = [p for m in (pipe.generator, pipe.body_encoder, pipe.hand_encoder) for p in m.parameters()]

    def bare_step():
        loss = (pipe.predict_clean(noisy, timesteps, reference, torch.zeros(n, channels, size, size)) - target).pow(2).mean()
        loss.backward()
        for p in parameters:
            p.grad = None

    def motion_step():
        out = motion_from_crops(pipe.body_encoder, pipe.hand_encoder, crops, boxes, hand_crops)
        anchors = token_anchors(out["anchors"][:, 0] + torch.tensor([0.0, 0.0, 0.9]))
        with torch.no_grad():
            crop_boxes = target_boxes(anchors, K, world_to_camera)
        maps = pipe.splat(anchors, out["features"][:, 0], K, world_to_camera, crop_boxes)
        loss = (pipe.predict_clean(noisy, timesteps, reference, maps) - target).pow(2).mean()
        loss.backward()
        for p in parameters:
            p.grad = None

    bare, motion, ratio = timed_pair(bare_step, motion_step, args.repeats)
    with torch.no_grad():
        sample = timed(lambda: pipe.predict_clean(noisy[:1].expand(17, -1, -1, -1), timesteps[:1].expand(17),
                                                  reference[:1].expand(17, -1, -1, -1),
                                                  torch.zeros(17, channels, size, size)), args.repeats)
    print(f"body proxy: {'yes' if body_proxy else 'no'}; body encoder geometry: {geometry}")
    print(f"training step, batch {n}, {args.threads} threads: bare generator {bare * 1000:.0f} ms, with the motion "
          f"branch {motion * 1000:.0f} ms, ratio {ratio:.3f} (the median of the two steps' ratio, run in turns)")
    print(f"sampling: one denoising step of a 17-frame window {sample * 1000:.0f} ms "
          f"({sample / 17 * 1000:.1f} ms a frame)")


if __name__ == "__main__":
    main()
