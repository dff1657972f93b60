"""`MotionSequence`: SMPL-H pose parameters per frame in the character frame, and its `.npz` form
(the `motion.npz` fields of docs/formats.md)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from blender_addon.core.atomic_io import write_npz_atomic
from dimo_engine.errors import InputError

_SHAPES = {
    "global_orient": (3,),
    "body_pose": (21, 3),
    "left_hand_pose": (15, 3),
    "right_hand_pose": (15, 3),
    "transl": (3,),
}


@dataclass
class MotionSequence:
    """F frames of SMPL-H parameters (axis-angle radians, metres), character frame: Z up, facing -Y
    at frame 0, pelvis above the origin at frame 0, feet on the ground (z = 0)."""

    family: str
    seed: int
    fps: float
    global_orient: np.ndarray  # (F, 3)
    body_pose: np.ndarray  # (F, 21, 3)
    left_hand_pose: np.ndarray  # (F, 15, 3)
    right_hand_pose: np.ndarray  # (F, 15, 3)
    transl: np.ndarray  # (F, 3)
    betas: np.ndarray = field(default_factory=lambda: np.zeros(10, dtype=np.float32))  # (10,)

    @property
    def num_frames(self) -> int:
        return int(self.global_orient.shape[0])

    def validate(self, source: str = "motion") -> "MotionSequence":
        frames = self.num_frames
        if frames < 1:
            raise InputError(f"{source}: the motion has no frames; give at least one frame")
        for name, shape in _SHAPES.items():
            value = np.asarray(getattr(self, name))
            if value.shape != (frames, *shape):
                raise InputError(f"{source}: '{name}' has shape {value.shape}, expected {(frames, *shape)}; write all fields with the same frame count")
            if not np.isfinite(value).all():
                raise InputError(f"{source}: '{name}' contains NaN or infinite values; regenerate the motion")
        if np.asarray(self.betas).ndim != 1 or not np.isfinite(self.betas).all():
            raise InputError(f"{source}: 'betas' must be a finite 1-D array (10 values); regenerate the motion")
        if not (np.isfinite(self.fps) and self.fps > 0):
            raise InputError(f"{source}: fps must be positive, got {self.fps}; set the motion's frame rate")
        return self

    def arrays(self) -> dict[str, np.ndarray]:
        """The float32 SMPL-H arrays by their `motion.npz` names."""
        out = {name: np.asarray(getattr(self, name), dtype=np.float32) for name in _SHAPES}
        out["betas"] = np.asarray(self.betas, dtype=np.float32)
        return out

    def save_npz(self, path: str | os.PathLike, joints: np.ndarray | None = None) -> Path:
        """Write the motion (plus `joints (F,52,3)` when given) atomically."""
        path = Path(path)
        arrays = self.arrays()
        arrays.update(family=np.array(self.family), seed=np.array(self.seed), fps=np.array(float(self.fps)))
        if joints is not None:
            arrays["joints"] = np.asarray(joints, dtype=np.float32)
        return write_npz_atomic(path, arrays)

    @classmethod
    def load_npz(cls, path: str | os.PathLike, fps: float | None = None) -> "MotionSequence":
        """Read a motion `.npz`; `fps` is needed when the file does not record one."""
        path = Path(path)
        try:
            data = dict(np.load(path, allow_pickle=False))
        except (OSError, ValueError) as error:
            raise InputError(f"{path}: not a readable motion .npz ({error}); give a file written by save_npz or the clip renderer") from error
        missing = [name for name in (*_SHAPES, "betas") if name not in data]
        if missing:
            raise InputError(f"{path}: motion file lacks {', '.join(missing)}; write SMPL-H parameters as in docs/formats.md")
        if fps is None:
            if "fps" not in data:
                raise InputError(f"{path}: the motion file records no fps; pass fps explicitly")
            fps = float(data["fps"])
        frames = int(data["global_orient"].shape[0])
        fields = {}
        for name, shape in _SHAPES.items():
            value = data[name]
            if value.size != frames * int(np.prod(shape)):
                raise InputError(f"{path}: '{name}' has shape {value.shape}, expected {(frames, *shape)}; write all fields with the same frame count")
            fields[name] = value.reshape(frames, *shape)
        motion = cls(family=str(data.get("family", "file")), seed=int(data.get("seed", 0)), fps=float(fps),
                     betas=data["betas"].reshape(-1), **fields)
        return motion.validate(str(path))
