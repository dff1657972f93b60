"""The camera views of one training clip, in the character frame: the driving view, a static ring
and moving cameras (single moves and combinations), all framed on what the person covers over the
clip; and the fixed view layout of the cross-view benchmark's test clips. numpy only, shared by the
headless planner and the add-on's scene clips."""

from __future__ import annotations

import numpy as np

from . import camera_rigs

CAMERA_MOVES = ("orbit", "dolly_in", "dolly_out", "crane_up", "crane_down", "handheld",
                "orbit+dolly_in", "orbit+crane_up", "dolly_out+handheld", "crane_down+orbit", "orbit+handheld")


def subject_box(points: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Box around points (..., 3) padded by margin metres, reaching down to the floor (z = 0)."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    low, high = points.min(axis=0) - margin, points.max(axis=0) + margin
    low[2] = min(low[2], 0.0)
    return low, high


def clip_views(num_views: int, box, num_frames: int, fps: float, size: int, rng: np.random.Generator) -> list:
    """`num_views` RigViews: the driving view, then half static (one ring of azimuths, two rings
    of elevations from 6 static views on) and the rest moving cameras."""
    common = dict(num_frames=num_frames, fps=fps, width=size, height=size, seed=rng, subject_box=box)
    views = [camera_rigs.RigView("driving", "driving", camera_rigs.driving_view(**common))]
    num_static = num_views // 2
    if num_static:
        rings = 2 if num_static >= 6 and num_static % 2 == 0 else 1
        elevations = sorted(float(e) for e in rng.uniform(0.0, 30.0, size=rings))
        views += camera_rigs.static_ring(num_static // rings, elevations, azimuth_jitter_deg=360.0 / num_static / 4, **common)
    for k in range(num_views - 1 - num_static):
        move = CAMERA_MOVES[int(rng.integers(len(CAMERA_MOVES)))]
        camera_path = camera_rigs.moving_camera(move, **common)
        views.append(camera_rigs.RigView(f"moving_{k:02d}_{move.replace('+', '_')}", "moving", camera_path, {"move": move}))
    return views


# Benchmark targets relative to the driving camera: (view name, bench target kind, azimuth offset, elevation offset).
BENCHMARK_STATIC_TARGETS = (
    ("novel_az045", "novel_45", 45.0, 0.0),
    ("novel_az090", "novel_90", 90.0, 0.0),
    ("novel_az180", "novel_180", 180.0, 0.0),
    ("elev_up20", "elevation", 0.0, 20.0),
    ("elev_up40", "elevation", 0.0, 40.0),
)
BENCHMARK_MOVES = ("orbit", "orbit+dolly_in")


def benchmark_views(box, num_frames: int, fps: float, size: int, rng: np.random.Generator) -> list:
    """The benchmark's views of one test clip: a still driving camera, a still front eye-level
    `reference` view (the reference image, as `DiMoPipeline.default_reference_camera`), novel still
    views at azimuth offsets 45/90/180 degrees and elevation offsets +20/+40 degrees from the driving
    camera, and moving cameras starting at the driving azimuth. Each target names its `bench_target`
    kind in the manifest; the driving view itself is the `driving` target (same-view reconstruction)."""
    common = dict(num_frames=num_frames, fps=fps, width=size, height=size, subject_box=box)
    azimuth, elevation = float(rng.uniform(-35.0, 35.0)), float(rng.uniform(0.0, 10.0))
    views = [
        camera_rigs.RigView("driving", "driving", camera_rigs.static_view(azimuth, elevation, seed=rng, **common),
                            {"azimuth_deg": azimuth, "elevation_deg": elevation, "bench_target": "driving"}),
        camera_rigs.RigView("reference", "static", camera_rigs.static_view(0.0, 0.0, seed=rng, **common),
                            {"azimuth_deg": 0.0, "elevation_deg": 0.0, "bench_role": "reference"}),
    ]
    for name, target, azimuth_offset, elevation_offset in BENCHMARK_STATIC_TARGETS:
        view_azimuth, view_elevation = (azimuth + azimuth_offset) % 360.0, elevation + elevation_offset
        views.append(camera_rigs.RigView(
            name, "static", camera_rigs.static_view(view_azimuth, view_elevation, seed=rng, **common),
            {"azimuth_deg": view_azimuth, "elevation_deg": view_elevation, "bench_target": target,
             "azimuth_offset_deg": azimuth_offset, "elevation_offset_deg": elevation_offset}))
    for move in BENCHMARK_MOVES:
        camera_path = camera_rigs.moving_camera(move, seed=rng, azimuth_deg=azimuth, **common)
        views.append(camera_rigs.RigView(f"moving_{move.replace('+', '_')}", "moving", camera_path,
                                         {"move": move, "bench_target": "moving"}))
    return views
