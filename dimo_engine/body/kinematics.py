"""Forward kinematics of the procedural SMPL-H body: its rest joints for given betas, posed joints and
rest-to-posed transforms from local rotations, the sole points under each foot, and the root placement that
keeps those soles on the ground. The motion families (motions.py) and BVH import (bvh.py) place their roots
with it.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import roma
import torch

from dimo_engine.body.motion_sequence import MotionSequence
from dimo_engine.body.skeleton import JOINT_INDEX, SMPLH_PARENTS

__all__ = ["foot_contacts", "forward_kinematics", "ground_translation", "procedural_rest_joints", "reground_motion",
           "sole_points"]

J = JOINT_INDEX
SIDES = ("left", "right")


@lru_cache(maxsize=1)
def _joint_shape_basis() -> tuple[np.ndarray, np.ndarray]:
    """Rest joints (52, 3) of the procedural body and their change per beta (52, 3, 10)."""
    from dimo_engine.body.procedural_body import NUM_BETAS, BodyProportions, _shape_variant

    base = BodyProportions()
    basis = np.zeros((*base.joints.shape, NUM_BETAS))
    floor = np.array([0.0, base.joints[J["left_foot"], 1] - 0.025, 0.0])
    basis[:, :, 0] = 0.05 * (base.joints - floor)
    for k in range(1, NUM_BETAS):
        basis[:, :, k] = _shape_variant(base, k).joints - base.joints
    return base.joints, basis


def procedural_rest_joints(betas) -> np.ndarray:
    """Rest joints (52, 3) of the procedural body for `betas`, canonical frame (no mesh needed)."""
    joints, basis = _joint_shape_basis()
    betas = np.zeros(basis.shape[-1]) if betas is None else np.asarray(betas, float).reshape(-1)[: basis.shape[-1]]
    return joints + basis[:, :, : len(betas)] @ betas


def foot_contacts(rest_joints: np.ndarray) -> tuple[list[int], np.ndarray]:
    """Sole points (heel, ball, toe tip of each foot) attached to the ankle/foot joints, canonical frame."""
    ids, points = [], []
    for side in SIDES:
        ankle, ball = rest_joints[J[f"{side}_ankle"]], rest_joints[J[f"{side}_foot"]]
        floor = ball[1] - 0.025
        ids += [J[f"{side}_ankle"], J[f"{side}_foot"], J[f"{side}_foot"]]
        points += [(ankle[0], floor, ankle[2] - 0.09), (ball[0], floor, ball[2]), (ball[0], floor + 0.005, ball[2] + 0.07)]
    return ids, np.array(points)


def forward_kinematics(rotmats: torch.Tensor, rest_joints: np.ndarray):
    """Joint positions (F, 52, 3) and rest-to-posed transforms (F, 52, 4, 4), root about the rest pelvis, no translation."""
    from smplx.lbs import batch_rigid_transform

    F = rotmats.shape[0]
    joints = torch.as_tensor(rest_joints, dtype=torch.float64)[None].expand(F, -1, -1)
    posed, transforms = batch_rigid_transform(rotmats, joints, torch.as_tensor(SMPLH_PARENTS), dtype=torch.float64)
    return posed.numpy(), transforms.numpy()


def sole_points(rotmats: torch.Tensor, rest_joints: np.ndarray) -> np.ndarray:
    """The `foot_contacts` points posed by local rotations `rotmats` (F, 52, 3, 3) -> (F, C, 3), root about
    the rest pelvis, no translation."""
    _, transforms = forward_kinematics(rotmats, rest_joints)
    ids, points = foot_contacts(rest_joints)
    return np.einsum("fcij,cj->fci", transforms[:, ids][..., :3, :3], points) + transforms[:, ids][..., :3, 3]


def ground_translation(rotmats: torch.Tensor, betas, travel: np.ndarray, lift: np.ndarray) -> np.ndarray:
    """transl (F, 3): lowest sole point on z = 0 (plus `lift`), pelvis over `travel` (pelvis xy = 0 at frame 0)."""
    rest = procedural_rest_joints(betas)
    contacts = sole_points(rotmats, rest)  # (F, C, 3)
    transl = np.zeros((rotmats.shape[0], 3))
    transl[:, 2] = -contacts[:, :, 2].min(axis=1) + lift
    transl[:, :2] = travel - rest[0, :2]
    return transl


def reground_motion(motion: MotionSequence, betas) -> MotionSequence:
    """The same poses on a body with other `betas`: root re-placed so the feet stay on the ground
    and the pelvis follows the same ground track (use after changing a procedural motion's betas)."""
    rotvec = np.concatenate([motion.global_orient[:, None], motion.body_pose, motion.left_hand_pose, motion.right_hand_pose], axis=1)
    rot = roma.rotvec_to_rotmat(torch.as_tensor(rotvec, dtype=torch.float64))
    old_rest = procedural_rest_joints(motion.betas)
    contacts = sole_points(rot, old_rest)
    lift = motion.transl[:, 2] + contacts[:, :, 2].min(axis=1)
    travel = motion.transl[:, :2] + old_rest[0, :2]
    transl = ground_translation(rot, betas, travel, lift)
    return MotionSequence(motion.family, motion.seed, motion.fps, motion.global_orient.copy(), motion.body_pose.copy(),
                          motion.left_hand_pose.copy(), motion.right_hand_pose.copy(), transl.astype(np.float32),
                          np.asarray(betas, np.float32).reshape(-1))
