"""The character's height. A driving clip alone cannot tell a small person near the camera from a tall one further
away, so the motion read from it comes at the size the encoders guess from the picture, about a typical body's. A
previs artist knows how tall their character is: `motion_at_height` scales the motion so its body stands that tall,
as the target cameras in the scene expect (docs/default_model.md, "The character's height").
"""

from __future__ import annotations

from functools import lru_cache

import torch

from dimo_engine.errors import InputError

__all__ = ["HEIGHT_RANGE_M", "body_height", "motion_at_height", "motion_height", "skeleton_span"]

HEIGHT_RANGE_M = (0.3, 3.0)
# Bones whose lengths add up to a body's height, whatever its pose: each leg from the ankle to the pelvis (the two
# averaged), and the spine from the pelvis to the head joint (SMPL-H body joints).
LEGS = (((7, 4), (4, 1), (1, 0)), ((8, 5), (5, 2), (2, 0)))
SPINE = ((0, 3), (3, 6), (6, 9), (9, 12), (12, 15))
# How tall the shipped reading (the silhouette stage's encoders, the silhouette fit) reads a body against how tall it
# stands: the median over 96 training views (48 clips' driving view and one still view) of encoded / true height is
# 0.987 (mean 0.983, sd 0.049). The encoders before the silhouette stage read 1.023, which this held until 2026-12-07.
ENCODED_HEIGHT_BIAS = 0.987


def skeleton_span(joints: torch.Tensor) -> torch.Tensor:
    """The leg and spine bone lengths of body joints `(..., 22, 3)` added up `(...)`: a height that does not change
    with the pose."""
    def length(bones):
        return sum((joints[..., a, :] - joints[..., b, :]).norm(dim=-1) for a, b in bones)

    return (length(LEGS[0]) + length(LEGS[1])) / 2 + length(SPINE)


@lru_cache(maxsize=1)
def _height_per_span() -> float:
    """The procedural body's standing height (its mesh, floor to crown) over its `skeleton_span`."""
    from dimo_engine.body.kinematics import procedural_rest_joints
    from dimo_engine.body.procedural_body import BodyProportions, build_mesh

    up = build_mesh(BodyProportions()).vertices[:, 1]
    span = skeleton_span(torch.as_tensor(procedural_rest_joints(None)[:22], dtype=torch.float64))
    return float((up.max() - up.min()) / span)


def body_height(betas, body_model=None) -> float:
    """How tall the procedural body of shape `betas` stands, floor to crown (its mesh), in metres: a rendered
    character's height, as an artist gives their own."""
    from dimo_engine.body.body_model import load_body_model

    up = (body_model or load_body_model()).rest_vertices(betas)[:, 1]
    return float(up.max() - up.min())


def motion_height(body_anchors: torch.Tensor) -> float:
    """How tall the body of a motion stands, in metres: its body anchors `(F, 22, 3)`, the clip's median span."""
    return float(skeleton_span(body_anchors.double()).median()) * _height_per_span()


def motion_at_height(motion, height_m: float):
    """`MotionTokens` (each token its feature, then its anchor in the character frame) scaled about the character
    frame's origin (the ground under the body at the first frame) so that the body stands `height_m` metres tall:
    its pose, its height above the ground and its travel alike, as a body of that size moves."""
    from dimo_engine.pipelines.pipeline_dimo import MotionTokens

    low, high = HEIGHT_RANGE_M
    if not low <= height_m <= high:
        raise InputError(f"character_height must be a height in metres from {low:g} to {high:g}, got {height_m!r}.")
    scale = height_m / (motion_height(motion.body[0, :, :, -3:]) / ENCODED_HEIGHT_BIAS)

    def scaled(tokens: torch.Tensor) -> torch.Tensor:
        return torch.cat([tokens[..., :-3], tokens[..., -3:] * scale], dim=-1)

    return MotionTokens(scaled(motion.body), scaled(motion.hands))
