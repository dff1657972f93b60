"""The body: SMPL-H skeleton, the procedural SMPL-H-compatible body file, loading through
smplx, procedural motions, their forward kinematics and train/test split, and BVH import.

Names are imported lazily so `from dimo_engine.body import SMPLH_JOINT_NAMES` needs no torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "SMPLH_JOINT_NAMES": "skeleton",
    "SMPLH_PARENTS": "skeleton",
    "NUM_JOINTS": "skeleton",
    "CANONICAL_TO_CHARACTER": "skeleton",
    "BODY_MODEL_NAME": "procedural_body",
    "make_body_model_file": "procedural_body",
    "make_body_model_data": "procedural_body",
    "BodyModel": "body_model",
    "load_body_model": "body_model",
    "default_body_model_path": "body_model",
    "MotionSequence": "motion_sequence",
    "MOTION_FAMILIES": "motions",
    "generate_motion": "motions",
    "motion_split": "train_test_split",
    "reground_motion": "kinematics",
    "load_bvh": "bvh",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"dimo_engine.body.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'dimo_engine.body' has no attribute {name!r}")
