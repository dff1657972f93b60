"""Writes small synthetic clip datasets in the exact docs/formats.md layout, so training tests run without rendering.

The "person" is a set of coloured squares at the projected 3D joints of a random moving
skeleton; every view sees the same joints through its own camera, so views agree the way
rendered ones do.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from PIL import Image

from blender_addon.core.camera_rigs import look_at

BODY_CENTRE = (0.0, 0.0, 0.9)  # where every fixture camera looks, metres in the character frame


def ring_eye(azimuth_deg: float, elevation_deg: float, distance: float = 3.5) -> np.ndarray:
    """Camera position on a ring round the character; azimuth 0 is in front (the character faces -Y)."""
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    return np.array([distance * math.sin(az) * math.cos(el), -distance * math.cos(az) * math.cos(el), BODY_CENTRE[2] + distance * math.sin(el)])


def _camera_json(world_to_cameras: np.ndarray, size: int, fps: float) -> dict:
    focal = 1.2 * size
    K = [[focal, 0.0, size / 2], [0.0, focal, size / 2], [0.0, 0.0, 1.0]]
    return {
        "format": "dimo-camera-path", "version": 1, "width": size, "height": size, "fps": fps,
        "frames": [{"frame": i, "K": K, "world_to_camera": w2c.tolist()} for i, w2c in enumerate(world_to_cameras)],
    }


def _project(joints: np.ndarray, camera: dict) -> tuple[np.ndarray, np.ndarray]:
    uv, depth = [], []
    for frame_joints, frame in zip(joints, camera["frames"]):
        w2c, K = np.asarray(frame["world_to_camera"]), np.asarray(frame["K"])
        cam = frame_joints @ w2c[:3, :3].T + w2c[:3, 3]
        pix = cam @ K.T
        uv.append(pix[:, :2] / pix[:, 2:3])
        depth.append(cam[:, 2])
    return np.stack(uv), np.stack(depth)  # (F, J, 2), (F, J)


def write_clip(root: Path, split: str, index: int, num_frames: int = 8, size: int = 64, fps: float = 12.0, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder = root / split / f"clip_{index:06d}"
    (folder / "views").mkdir(parents=True)
    t = np.arange(num_frames)[:, None, None] / fps
    base = np.stack([rng.uniform(-0.3, 0.3, 52), rng.uniform(-0.1, 0.1, 52), rng.uniform(0.1, 1.7, 52)], axis=-1)
    joints = (base[None] + 0.15 * np.sin(2 * math.pi * (0.5 * t + rng.uniform(0, 1, (1, 52, 3))))).astype(np.float32)
    motion = {
        "global_orient": rng.normal(0, 0.3, (num_frames, 3)),
        "body_pose": rng.normal(0, 0.3, (num_frames, 21, 3)),
        "left_hand_pose": rng.normal(0, 0.3, (num_frames, 15, 3)),
        "right_hand_pose": rng.normal(0, 0.3, (num_frames, 15, 3)),
        "betas": rng.normal(0, 1, 10),
        "transl": joints[:, 0] * [1, 1, 0],
        "joints": joints,
    }
    np.savez(folder / "motion.npz", **{k: np.asarray(v, dtype=np.float32) for k, v in motion.items()})
    colours = rng.integers(40, 255, (52, 3))
    background = rng.integers(0, 60, 3)
    orbit = np.linspace(0.0, 90.0, num_frames)
    views = [
        ({"name": "driving", "kind": "driving"}, [ring_eye(10.0, 5.0)] * num_frames),
        ({"name": "static_az045_el10", "kind": "static", "azimuth_deg": 45.0, "elevation_deg": 10.0}, [ring_eye(45.0, 10.0)] * num_frames),
        ({"name": "static_az180_el00", "kind": "static", "azimuth_deg": 180.0, "elevation_deg": 0.0}, [ring_eye(180.0, 0.0)] * num_frames),
        ({"name": "moving_orbit", "kind": "moving", "move": "orbit"}, [ring_eye(a, 5.0) for a in orbit]),
    ]
    for entry, eyes in views:
        view_dir = folder / "views" / entry["name"]
        (view_dir / "frames").mkdir(parents=True)
        camera = _camera_json(np.stack([look_at(eye, BODY_CENTRE) for eye in eyes]), size, fps)
        (view_dir / "camera.json").write_text(json.dumps(camera))
        uv, depth = _project(joints, camera)
        for f in range(num_frames):
            rgba = np.zeros((size, size, 4), dtype=np.uint8)
            rgba[..., :3] = background
            for j in np.argsort(-depth[f]):  # far joints first so near ones cover them
                x, y = np.round(uv[f, j]).astype(int)
                rgba[max(y - 2, 0):max(y + 2, 0), max(x - 2, 0):max(x + 2, 0)] = (*colours[j], 255)
            Image.fromarray(rgba, "RGBA").save(view_dir / "frames" / f"{f:04d}.png")
        visible = (depth > 0) & (uv >= 0).all(-1) & (uv < size).all(-1)
        hands = [uv[:, 20:21].repeat(2, 1), uv[:, 21:22].repeat(2, 1)]  # wrists as stand-ins for hand joints
        hand_boxes = np.stack([np.concatenate([h.min(1) - 4, h.max(1) + 4], -1) for h in hands], 1)
        person_box = np.concatenate([uv.min(1), uv.max(1)], -1)
        np.savez(view_dir / "annotations.npz", joints2d=uv.astype(np.float32), joints_visible=visible,
                 hand_boxes=hand_boxes.astype(np.float32), person_box=person_box.astype(np.float32))
    manifest = {
        "format": "dimo-clip", "version": 1, "clip_id": f"{split}/clip_{index:06d}", "split": split,
        "num_frames": num_frames, "fps": fps, "width": size, "height": size,
        "motion": {"family": "synthetic", "seed": seed, "source": "procedural"},
        "appearance_seed": seed + 1, "render": {"engine": "numpy", "samples": 1},
        "body_model": "dimo-smplh-procedural-v1", "driving_view": "driving",
        "views": [entry for entry, _ in views],
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def write_dataset(root, num_clips: int = 2, num_frames: int = 8, size: int = 64, splits=("train",)) -> Path:
    """A dataset folder with `num_clips` clips per split; returns its root."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset.json").write_text(json.dumps({"format": "dimo-clip-dataset", "version": 1, "width": size, "height": size}))
    for split in splits:
        for index in range(num_clips):
            write_clip(root, split, index, num_frames=num_frames, size=size, seed=1000 * (split == "test") + index)
    return root
