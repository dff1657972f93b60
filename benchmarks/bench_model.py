"""Benchmark of the default CPU model size (17 frames x 128 px): DiT step time with and without the motion and
camera branches, measured in the same run, and the motion encoders' time per driving frame.

Run: `python benchmarks/bench_model.py [--preset tiny-cpu] [--repeats 10] [--threads N]`.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from dimo_engine.pipelines import create_random_pipeline


def timed(function, repeats: int) -> float:
    """Median seconds of `repeats` calls after one warm-up call."""
    function()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def timed_pair(first, second, repeats: int) -> tuple[float, float, float]:
    """Median seconds of `first` and of `second`, called in turns (one warm-up each), and the median of the
    second's time over the first's, call by call: a machine that speeds up or slows down during the run moves both
    alike, where timing all of one and then all of the other would put the drift into their ratio."""
    first(), second()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        first()
        middle = time.perf_counter()
        second()
        times.append((middle - start, time.perf_counter() - middle))
    ones, twos = zip(*times)
    return statistics.median(ones), statistics.median(twos), statistics.median(b / a for a, b in times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="tiny-cpu")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    pipe = create_random_pipeline(seed=0, preset=args.preset)
    cfg, transformer = pipe.config, pipe.transformer
    # Non-zero new projections, so the branches do real work (fresh ones are zero-initialised).
    with torch.no_grad():
        for block in transformer.motion_blocks:
            torch.nn.init.normal_(block.to_out.weight, std=0.02)
        torch.nn.init.normal_(transformer.camera_embedding.weight, std=0.02)

    g = pipe.vae_scale_factor_temporal
    s = pipe.vae_scale_factor_spatial
    r = transformer.config.camera_unshuffle
    latent_shape = (1, transformer.config.in_channels, (cfg.num_frames - 1) // g + 1, cfg.height // s, cfg.width // s)
    latents = torch.randn(latent_shape)  # (B, C, T, h, w)
    reference = torch.randn(*latent_shape[:2], 1, *latent_shape[3:])  # (B, C, 1, h, w)
    rays = torch.randn(1, 6, cfg.num_frames, latent_shape[3] * r, latent_shape[4] * r)  # (B, 6, F, h*r, w*r)
    reference_rays = torch.randn(1, 6, 1, latent_shape[3] * r, latent_shape[4] * r)
    frames = torch.rand(1, cfg.num_frames, 3, cfg.height, cfg.width)  # (B, F, 3, H, W)
    quarter = cfg.width / 4
    boxes = torch.tensor([[quarter * 0.5, quarter * 2, quarter * 1.3, quarter * 2.8],
                          [quarter * 2.7, quarter * 2, quarter * 3.5, quarter * 2.8]]).expand(1, cfg.num_frames, 2, 4)
    with torch.no_grad():
        motion = pipe.encode_motion(frames, boxes).joined()  # (B, F, K, D)
    timestep = torch.tensor([500.0])

    def step(with_motion: bool, with_camera: bool):
        def run():
            with torch.no_grad():
                transformer(latents, timestep, motion_tokens=motion if with_motion else None,
                            camera_rays=rays if with_camera else None, reference_latents=reference,
                            reference_rays=reference_rays if with_camera else None, use_motion=with_motion)
        return run

    parameters = sum(p.numel() for p in transformer.parameters()) / 1e6
    print(f"preset {args.preset}: {cfg.num_frames} frames x {cfg.height}x{cfg.width} px, latents {tuple(latent_shape)}, "
          f"DiT {parameters:.1f}M parameters, {torch.get_num_threads()} threads")
    results = {}
    # Interleave the variants so drift on a shared machine hits them alike.
    for label, flags in [("backbone only (no motion, no camera)", (False, False)),
                         ("+ camera", (False, True)),
                         ("+ motion", (True, False)),
                         ("+ motion + camera (full)", (True, True))]:
        results[label] = timed(step(*flags), args.repeats)
    base = results["backbone only (no motion, no camera)"]
    for label, seconds in results.items():
        print(f"DiT step {label:<40s} {seconds * 1000:8.1f} ms  ({seconds / base:4.2f}x)")

    def encode():
        with torch.no_grad():
            pipe.encode_motion(frames, boxes)

    def body_only():
        with torch.no_grad():
            pipe.body_encoder(frames)

    per_call = timed(encode, args.repeats)
    body = timed(body_only, args.repeats)
    print(f"motion encoders (body + 2 hand crops): {per_call / cfg.num_frames * 1000:.2f} ms per frame "
          f"({per_call * 1000:.1f} ms for {cfg.num_frames} frames; body alone {body / cfg.num_frames * 1000:.2f} ms/frame)")


if __name__ == "__main__":
    main()
