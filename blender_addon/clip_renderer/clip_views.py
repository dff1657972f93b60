"""The camera views of one training clip, in the character frame: the driving view, a static ring
and moving cameras (single moves and combinations), all framed on what the person covers over the
clip. numpy only, shared by the headless planner and the add-on's scene clips."""

from __future__ import annotations

import numpy as np

from .. import camera_rigs

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
