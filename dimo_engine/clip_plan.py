"""Plans the synthetic training clips on the engine side: which motion, body shape, cameras and
appearance seed each clip gets, with the SMPL-H forward kinematics done here through smplx, and
writes the plan folder the Blender worker (`blender_addon.clip_renderer.worker`) renders from.

A clip's content depends only on (split, index, seed, settings), so shards and resumed runs agree.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass

import numpy as np
import torch

from blender_addon.core.camera_path import camera_path_to_dict
from blender_addon.core.appearance import random_betas
from blender_addon.core.clip_views import benchmark_views, clip_views, subject_box
from dimo_engine.errors import InputError

SPLITS = ("train", "test")
ENGINES = ("cycles", "workbench")
LAYOUTS = ("training", "benchmark")  # benchmark: the fixed views of benchmark_views, plus background plates


@dataclass
class RenderSettings:
    """What `dimo render-clips` renders; recorded in dataset.json so a resumed run must match."""

    clips: int = 8
    views: int = 4
    frames: int = 16
    fps: float = 12.0
    resolution: int = 128
    engine: str = "cycles"
    samples: int = 8
    denoise: bool = False
    split: str = "train"
    seed: int = 0
    threads: int = 0
    layout: str = "training"

    def validate(self) -> "RenderSettings":
        if self.clips < 1:
            raise InputError(f"--clips is {self.clips}; ask for at least 1 clip.")
        if not 1 <= self.views <= 64:
            raise InputError(f"--views is {self.views}; use 1 to 64 views per clip (the first is the driving view).")
        if not 1 <= self.frames <= 1000:
            raise InputError(f"--frames is {self.frames}; use 1 to 1000 frames per clip.")
        if not 0 < self.fps <= 240:
            raise InputError(f"--fps is {self.fps}; use a frame rate between 1 and 240.")
        if not 16 <= self.resolution <= 4096:
            raise InputError(f"--resolution is {self.resolution}; use 16 to 4096 pixels.")
        if self.engine not in ENGINES:
            raise InputError(f"--engine is {self.engine!r}; use one of {', '.join(ENGINES)}.")
        if not 1 <= self.samples <= 4096:
            raise InputError(f"--samples is {self.samples}; use 1 to 4096 samples.")
        if self.split not in SPLITS:
            raise InputError(f"--split is {self.split!r}; use train or test.")
        if self.layout not in LAYOUTS:
            raise InputError(f"--layout is {self.layout!r}; use training or benchmark.")
        return self

    def dataset_record(self) -> dict:
        """The settings that decide clip content (not shard or threads), as stored in dataset.json."""
        record = {key: getattr(self, key) for key in ("views", "frames", "fps", "resolution", "engine", "samples", "denoise", "seed")}
        # Only a non-default layout is recorded, so datasets rendered before layouts existed still resume.
        return record if self.layout == "training" else {**record, "layout": self.layout}


@dataclass
class PlannedClip:
    index: int
    split: str
    motion_family: str
    motion_seed: int
    appearance_seed: int
    views: list  # camera_rigs.RigView
    arrays: dict  # motion parameters, joints (F,52,3), armature_pose (F,52,3), rest_vertices, rest_joints


def parse_shard(text: str) -> tuple[int, int]:
    """'i/n' -> (i, n) with 0 <= i < n."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not match or int(match.group(2)) < 1 or int(match.group(1)) >= int(match.group(2)):
        raise InputError(f"--shard is {text!r}; write it as i/n with 0 <= i < n, e.g. 0/4.")
    return int(match.group(1)), int(match.group(2))


def shard_indices(num_clips: int, shard: int, num_shards: int) -> list[int]:
    """Clip indices of one shard: every n-th clip from i, so shards never overlap and cover all clips."""
    return list(range(shard, num_clips, num_shards))


def _seed(*parts) -> int:
    return int(np.random.SeedSequence([abs(int(p)) for p in parts]).generate_state(1)[0])


def appearance_seed(split: str, index: int, seed: int) -> int:
    return _seed(seed, SPLITS.index(split), index, 17)


def _smplh_module(body_model):
    """The smplx SMPL-H module inside the project's BodyModel; the renderer's armature is SMPL-H only."""
    import smplx

    module = getattr(body_model, "smpl", body_model)
    if type(module) is not smplx.SMPLH:
        raise InputError(f"{getattr(body_model, 'path', 'the body model')} is not an SMPL-H model; render clips with an SMPL-H body file (the default one is).")
    return module


def armature_pose(body_model, motion) -> np.ndarray:
    """(F,52,3) axis-angle per joint as smplx applies it: the parameters plus the hand mean (and PCA)."""
    module = _smplh_module(body_model)
    dtype = module.shapedirs.dtype
    F = motion.num_frames

    def tensor(array, width):
        return torch.as_tensor(np.asarray(array, dtype=np.float64).reshape(F, width), dtype=dtype)

    with torch.no_grad():
        output = module(
            global_orient=tensor(motion.global_orient, 3),
            body_pose=tensor(motion.body_pose, 63),
            left_hand_pose=tensor(motion.left_hand_pose, 45),
            right_hand_pose=tensor(motion.right_hand_pose, 45),
            betas=torch.zeros(F, module.shapedirs.shape[-1], dtype=dtype),
            transl=torch.zeros(F, 3, dtype=dtype),
            return_full_pose=True,
            return_verts=False,
        )
    return output.full_pose.reshape(F, -1, 3).double().numpy()


def plan_clip(settings: RenderSettings, index: int, body_model, family: str, motion_seed: int) -> PlannedClip:
    from dimo_engine.body.motions import generate_motion

    seed = appearance_seed(settings.split, index, settings.seed)
    betas = random_betas(seed)
    # The root is placed for this body shape (feet on the ground), so betas come first.
    motion = generate_motion(family, motion_seed, settings.frames, settings.fps, betas=betas)
    joints, _vertices = body_model.forward(motion, betas=betas)
    rest_vertices, rest_joints = body_model.rest_vertices(betas), body_model.rest_joints(betas)
    rng = np.random.default_rng(_seed(settings.seed, SPLITS.index(settings.split), index, 29))
    arrays = {
        "global_orient": motion.global_orient, "body_pose": motion.body_pose,
        "left_hand_pose": motion.left_hand_pose, "right_hand_pose": motion.right_hand_pose,
        "betas": betas, "transl": motion.transl, "joints": np.asarray(joints, dtype=np.float32),
        "armature_pose": armature_pose(body_model, motion), "rest_vertices": rest_vertices, "rest_joints": rest_joints,
    }
    # Joints plus a margin for flesh and hair: the box the cameras keep in frame.
    box = subject_box(joints, margin=0.15)
    if settings.layout == "benchmark":
        views = benchmark_views(box, settings.frames, settings.fps, settings.resolution, rng)
    else:
        views = clip_views(settings.views, box, settings.frames, settings.fps, settings.resolution, rng)
    return PlannedClip(index, settings.split, family, int(motion_seed), seed, views, arrays)


def plan_clips(settings: RenderSettings, indices: list[int], body_model=None) -> list[PlannedClip]:
    """Plans of the given clip indices (motions from the fixed split, so test clips never see train motions)."""
    from dimo_engine.body import load_body_model
    from dimo_engine.body.train_test_split import motion_split

    body_model = body_model or load_body_model()
    motions = motion_split(settings.split, settings.clips, settings.seed)
    return [plan_clip(settings, index, body_model, *motions[index]) for index in indices]


def body_arrays(body_model) -> dict:
    from dimo_engine.body import SMPLH_PARENTS

    _smplh_module(body_model)
    return {"faces": body_model.faces, "weights": body_model.weights.astype(np.float64), "parents": np.asarray(SMPLH_PARENTS)}


def write_plan(plan_dir: str, root: str, settings: RenderSettings, clips: list[PlannedClip], body_model, body_model_name: str) -> str:
    """Write plan.json, body.npz and one npz per clip into plan_dir (replaced whole); returns plan_dir."""
    from dimo_engine.body import SMPLH_JOINT_NAMES

    shutil.rmtree(plan_dir, ignore_errors=True)
    os.makedirs(plan_dir)
    np.savez(os.path.join(plan_dir, "body.npz"), **body_arrays(body_model))
    entries = []
    for clip in clips:
        name = f"clip_{clip.index:06d}.npz"
        np.savez(os.path.join(plan_dir, name), **clip.arrays)
        entries.append({
            "index": clip.index, "split": clip.split, "arrays": name,
            "motion": {"family": clip.motion_family, "seed": clip.motion_seed, "source": "procedural"},
            "appearance_seed": clip.appearance_seed,
            "views": [{**v.manifest_entry(), "camera": camera_path_to_dict(v.camera_path)} for v in clip.views],
        })
    plan = {
        "root": os.path.abspath(root),
        "settings": {
            "engine": settings.engine, "samples": settings.samples, "denoise": settings.denoise,
            "width": settings.resolution, "height": settings.resolution, "fps": settings.fps,
            "num_frames": settings.frames, "threads": settings.threads, "body_model": body_model_name,
            "background_plates": settings.layout == "benchmark",
        },
        "joint_names": list(SMPLH_JOINT_NAMES),
        "clips": entries,
    }
    with open(os.path.join(plan_dir, "plan.json"), "w") as handle:
        json.dump(plan, handle)
    return plan_dir
