"""Loads an SMPL-H body through `smplx` (the project's procedural file or a licensed SMPL-H /
SMPL-X file) and poses it with a motion sequence: joints and vertices in the character frame.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from dimo_engine.body.procedural_body import make_body_model_file
from dimo_engine.body.skeleton import NUM_JOINTS
from dimo_engine.errors import InputError

if TYPE_CHECKING:
    from dimo_engine.body.motion_sequence import MotionSequence

# Bump when the procedural builder changes, so caches regenerate instead of going stale.
PROCEDURAL_FILE_NAME = "SMPLH_DIMO_PROCEDURAL_V1.npz"
# SMPL-X orders jaw and eyes (22-24) before the hands; SMPL-H's 52 joints are these.
_SMPLX_TO_SMPLH = np.r_[0:22, 25:55]


def cache_dir() -> Path:
    """Where generated files live: $DIMO_CACHE, else ~/.cache/dimo."""
    return Path(os.environ.get("DIMO_CACHE") or Path.home() / ".cache" / "dimo")


def default_body_model_path() -> Path:
    """The procedural body file in the cache folder, generated (atomically) on first use."""
    path = cache_dir() / "body" / PROCEDURAL_FILE_NAME
    if not path.exists():
        make_body_model_file(path)
    return path


class BodyModel:
    """An `smplx` SMPL-H (or SMPL-X) model posed by `MotionSequence`s, returning numpy arrays."""

    def __init__(self, smpl_module: torch.nn.Module, path: Path, joint_map: np.ndarray | None = None):
        self.smpl = smpl_module.eval()
        self.path = path
        self._joint_map = joint_map  # body-model joint index for each SMPL-H joint, None when identical
        self.num_betas = int(smpl_module.num_betas)

    @property
    def faces(self) -> np.ndarray:
        """(T, 3) int64 triangle vertex indices."""
        return np.asarray(self.smpl.faces, dtype=np.int64)

    @property
    def weights(self) -> np.ndarray:
        """(V, 52) skinning weights over the SMPL-H joints."""
        weights = self.smpl.lbs_weights.detach().cpu().numpy()
        return weights if self._joint_map is None else weights[:, self._joint_map]

    @property
    def num_vertices(self) -> int:
        return int(self.smpl.v_template.shape[0])

    def _betas(self, betas, batch: int) -> torch.Tensor:
        full = torch.zeros(batch, self.num_betas)
        if betas is not None:
            values = torch.as_tensor(np.asarray(betas, dtype=np.float32).reshape(-1))[: self.num_betas]
            full[:, : len(values)] = values
        return full

    def rest_vertices(self, betas=None) -> np.ndarray:
        """(V, 3) the shaped template in the model's canonical frame (Y up, facing +Z)."""
        with torch.no_grad():
            shaped = self.smpl.v_template + torch.einsum("v c k, k -> v c", self.smpl.shapedirs, self._betas(betas, 1)[0])
        return shaped.numpy().astype(np.float32)

    def rest_joints(self, betas=None) -> np.ndarray:
        """(52, 3) rest joint positions in the model's canonical frame for `betas` (10,)."""
        with torch.no_grad():
            joints = self.smpl.J_regressor @ torch.as_tensor(self.rest_vertices(betas))
        joints = joints.numpy()
        return joints if self._joint_map is None else joints[self._joint_map]

    def forward(self, motion: "MotionSequence", betas=None, chunk: int = 32) -> tuple[np.ndarray, np.ndarray]:
        """Pose the body: joints (F, 52, 3) and vertices (F, V, 3), float32, character frame.

        `betas` overrides `motion.betas`. Frames go through smplx in chunks to bound memory.
        """
        betas = motion.betas if betas is None else betas
        pose = {
            "global_orient": np.asarray(motion.global_orient, np.float32).reshape(-1, 3),
            "body_pose": np.asarray(motion.body_pose, np.float32).reshape(-1, 63),
            "left_hand_pose": np.asarray(motion.left_hand_pose, np.float32).reshape(-1, 45),
            "right_hand_pose": np.asarray(motion.right_hand_pose, np.float32).reshape(-1, 45),
            "transl": np.asarray(motion.transl, np.float32).reshape(-1, 3),
        }
        frames = pose["global_orient"].shape[0]
        joints_out, verts_out = [], []
        with torch.no_grad():
            for start in range(0, frames, chunk):
                part = {k: torch.from_numpy(v[start:start + chunk]) for k, v in pose.items()}
                n = part["global_orient"].shape[0]
                extra = {}
                if self._joint_map is not None:  # SMPL-X: neutral face
                    extra = {name: torch.zeros(n, 3) for name in ("jaw_pose", "leye_pose", "reye_pose")}
                    extra["expression"] = torch.zeros(n, self.smpl.num_expression_coeffs)
                out = self.smpl(betas=self._betas(betas, n), return_verts=True, **part, **extra)
                joints = out.joints[:, : (NUM_JOINTS if self._joint_map is None else 55)]
                if self._joint_map is not None:
                    joints = joints[:, self._joint_map]
                joints_out.append(joints.numpy())
                verts_out.append(out.vertices.numpy())
        return np.concatenate(joints_out).astype(np.float32), np.concatenate(verts_out).astype(np.float32)

    __call__ = forward


def _read_arrays(path: Path) -> tuple[dict, str]:
    ext = path.suffix.lower().lstrip(".")
    if ext == "npz":
        return dict(np.load(path, allow_pickle=True)), ext
    if ext == "pkl":
        import pickle

        try:
            with open(path, "rb") as handle:
                return dict(pickle.load(handle, encoding="latin1")), ext
        except ModuleNotFoundError as error:  # e.g. chumpy arrays in the original SMPL pickles
            raise InputError(
                f"{path}: the pickle needs the '{error.name}' module; convert it to plain numpy arrays "
                "(an .npz, as in smplx's tools/clean_ch.py) and point the config at that file"
            ) from error
    raise InputError(f"{path}: a body model must be an .npz or .pkl SMPL-H / SMPL-X file; pass one of those")


def load_body_model(path: str | os.PathLike | None = None, num_betas: int = 10) -> BodyModel:
    """Load the body model at `path` (default: the procedural SMPL-H file) through smplx.

    Accepts SMPL-H files (52 joints; hands without the relaxed mean, so a zero pose is the
    rest pose) and SMPL-X files (55 joints; joints returned in SMPL-H order).
    """
    import smplx
    from smplx.utils import Struct

    path = Path(default_body_model_path() if path is None else path)
    if not path.is_file():
        raise InputError(f"{path}: body model file not found; run `dimo make-body --out {path}` or give an existing SMPL-H file")
    arrays, ext = _read_arrays(path)
    missing = [k for k in ("v_template", "f", "J_regressor", "weights", "kintree_table", "shapedirs", "posedirs") if k not in arrays]
    if missing:
        raise InputError(f"{path}: not an SMPL-family body model (missing {', '.join(missing)}); give an SMPL-H or SMPL-X file")
    num_joints = int(np.asarray(arrays["kintree_table"]).shape[1])
    common = dict(data_struct=Struct(**arrays), num_betas=num_betas, use_pca=False, flat_hand_mean=True, ext=ext, batch_size=1)
    # smplx prints a warning for files with fewer than 300 shape components; all such files are fine here.
    with contextlib.redirect_stdout(io.StringIO()):
        if num_joints == NUM_JOINTS:
            module = smplx.SMPLH(model_path=str(path), **common)
            joint_map = None
        elif num_joints == 55:
            module = smplx.SMPLX(model_path=str(path), use_face_contour=False, **common)
            joint_map = _SMPLX_TO_SMPLH
        else:
            raise InputError(f"{path}: a body model with {num_joints} joints is neither SMPL-H (52) nor SMPL-X (55); give one of those")
    return BodyModel(module, path, joint_map)
