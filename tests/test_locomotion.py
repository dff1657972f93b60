"""A travelling clip's focal length and heading read together (`dimo_engine.locomotion`)."""

import math

import numpy as np
import pytest
import torch

from dimo_engine.locomotion import TYPICAL_VERTICAL_FOV_DEG, travelling_anchors
from dimo_engine.models.anchored_motion_encoder import body_facing, character_frame_anchors, root_from_track

FRAMES = 17


def body(turn_deg: float) -> torch.Tensor:
    """22 joints of a body facing -Y turned by `turn_deg` about Z, pelvis 0.9 m up, at the origin: `(22, 3)`."""
    rng = np.random.default_rng(0)
    joints = rng.uniform(-0.2, 0.2, (22, 3)) * [1, 0.3, 1] + [0, 0, 0.9]
    joints[0] = [0, 0, 0.9]
    joints[1], joints[2] = [0.1, 0, 0.85], [-0.1, 0, 0.85]  # left hip on +X: the body faces -Y
    joints[16], joints[17] = [0.2, 0, 1.4], [-0.2, 0, 1.4]
    return torch.tensor(joints, dtype=torch.float32) @ turn(turn_deg).T


def turn(angle_deg: float) -> torch.Tensor:
    angle = math.radians(angle_deg)
    return torch.tensor([[math.cos(angle), -math.sin(angle), 0.0], [math.sin(angle), math.cos(angle), 0.0],
                         [0.0, 0.0, 1.0]])


def encoded_clip(facing_deg: float, travel_turn_deg: float, length_m: float, facing_error_deg: float,
                 focal_ratio: float = 1.1, then_turn_deg: float | None = None):
    """What the encoder gives for a body turned `facing_deg` from facing a level pinhole camera (the view frame:
    camera at the origin 0.9 m up, looking +Y), travelling `length_m` over FRAMES frames at `travel_turn_deg` from
    its facing (and, with `then_turn_deg`, 2 m more over 25 frames at that angle from its facing), seen at
    `focal_ratio` times a typical lens's focal length: its pose read `facing_error_deg` off, its 2D joints exact and
    its root head's distance 0.6 of the truth (as the shipped head reads a walk)."""
    focal = 64 / math.tan(math.radians(TYPICAL_VERTICAL_FOV_DEG) / 2) * focal_ratio
    start = body(facing_deg)
    path = torch.linspace(0, length_m, FRAMES)[:, None] * (turn(travel_turn_deg) @ body_facing(start))
    if then_turn_deg is not None:
        onwards = torch.linspace(0, 2.0, 26)[1:, None] * (turn(then_turn_deg) @ body_facing(start))
        path = torch.cat([path, path[-1] + onwards])
    joints = start + torch.tensor([0.3, 6.0, 0.0]) + path[:, None]
    joints_px = torch.stack([focal * joints[..., 0] / joints[..., 1] + 64,
                             -focal * (joints[..., 2] - 0.9) / joints[..., 1] + 64], -1)
    pose = (body(facing_deg + facing_error_deg) - start[:1]).expand(len(path), 22, 3)
    root = torch.stack([joints[:, 0, 0], 0.6 * joints[:, 0, 1], joints[:, 0, 2]], -1)
    return pose, joints_px, root


def travel_heading_and_length(anchors: torch.Tensor) -> tuple[float, float]:
    """Character-frame anchors `(1, T, 22, 3)` -> where the root's travel heads (degrees from the facing, -Y) and
    how far it goes (metres)."""
    travel = anchors[0, -1, 0, :2] - anchors[0, 0, 0, :2]
    return math.degrees(math.atan2(float(travel[0]), -float(travel[1]))), float(travel.norm())


def plain_reading(pose, joints_px, root) -> torch.Tensor:
    return character_frame_anchors(pose[None], root_from_track(joints_px, pose, root, 128, 0.0)[None])


@pytest.mark.parametrize("facing_error_deg", [6.0, -6.0])
def test_a_walk_is_read_along_its_facing_and_nearer_its_length_than_the_root_heads_distance_gives(facing_error_deg):
    clip = encoded_clip(facing_deg=30, travel_turn_deg=0, length_m=1.6, facing_error_deg=facing_error_deg)
    plain_heading, plain_length = travel_heading_and_length(plain_reading(*clip))
    heading, length = travel_heading_and_length(travelling_anchors(*clip, 128, 128, 0.0))
    assert abs(plain_heading) > 10 and plain_length < 1.15  # the facing error and the short distance, as shipped
    assert abs(heading) < 3
    assert length == pytest.approx(1.6, rel=0.2)


def test_a_side_step_is_read_sideways_and_a_backward_walk_backwards():
    side = encoded_clip(facing_deg=20, travel_turn_deg=90, length_m=1.2, facing_error_deg=6.0)
    backwards = encoded_clip(facing_deg=150, travel_turn_deg=180, length_m=1.2, facing_error_deg=6.0)
    assert abs(travel_heading_and_length(plain_reading(*side))[0] - 90) > 10
    assert travel_heading_and_length(travelling_anchors(*side, 128, 128, 0.0))[0] == pytest.approx(90, abs=2)
    assert abs(travel_heading_and_length(travelling_anchors(*backwards, 128, 128, 0.0))[0]) == pytest.approx(180, abs=3)


def test_a_clip_that_stays_put_is_read_as_before():
    clip = encoded_clip(facing_deg=30, travel_turn_deg=0, length_m=0.0, facing_error_deg=6.0)
    assert torch.equal(travelling_anchors(*clip, 128, 128, 0.0), plain_reading(*clip))


def test_a_longer_clip_takes_its_heading_from_its_first_frames_before_it_turns():
    # the walk, then 2 m more walking off to the body's side
    clip = encoded_clip(facing_deg=30, travel_turn_deg=0, length_m=1.6, facing_error_deg=6.0, then_turn_deg=90)
    anchors = travelling_anchors(*clip, 128, 128, 0.0)
    assert abs(travel_heading_and_length(anchors[:, :FRAMES])[0]) < 3


@pytest.mark.parametrize("length_m", [0.0, 1.6])
def test_the_reading_stays_differentiable_in_the_pose(length_m):
    pose, joints_px, root = encoded_clip(facing_deg=30, travel_turn_deg=0, length_m=length_m, facing_error_deg=6.0)
    pose = pose.clone().requires_grad_(True)
    travelling_anchors(pose, joints_px, root, 128, 128, 0.0).sum().backward()
    assert pose.grad is not None and pose.grad.abs().sum() > 0
