"""A travelling driving clip's heading and depth travel, read together.

Two readings fail a clip that travels. Its depth travel scales with the driving camera's focal length, which no video
states: `root_from_track` takes it from the root head's distance, which reads a walk's travel at 0.55-0.6 of its
length. And the character frame turns the travel by the first frame's facing, which the body encoder reads 5-7
degrees off: a 1.7 m walk then lands 0.2 m off its path, seen from the driving camera. People travel forwards,
backwards or sideways relative to their hips (the train split's travelling motions keep within 4.0 degrees rms of a
quarter turn of their first frame's facing), so the travel's direction is a second reading of the facing, once the
focal length is known. `travelling_anchors` reads the two together: among typical focal lengths, the one whose travel
agrees best with the encoder's facing, and the facing turned towards that travel by the share of the two readings'
trust its heading earns (docs/default_model.md, "Less smoothing, and a travelling clip's heading").
"""

from __future__ import annotations

import math

import torch

from dimo_engine.models.anchored_motion_encoder import character_frame_anchors, root_from_track

TRAVELLING_M = 0.3  # a clip whose depth travel (at the root head's focal length) exceeds this is read as travelling
TYPICAL_VERTICAL_FOV_DEG = 33.7  # the log-midpoint of the focal lengths of 20-55 degree lenses (the renders' range)
FOCAL_LOG_SIGMA = 0.3  # their spread, in log focal length
FACING_SIGMA_DEG = 6.0  # the body encoder's first-frame facing error (the test clips 5.5, fresh train clips 7.3)
HEADING_SIGMA_DEG = 4.0  # a travel's angle to the nearest quarter turn of the first frame's facing (train split, rms)
FOCAL_STEPS = torch.linspace(-0.8, 0.8, 81).tolist()  # log focal lengths searched, about the typical one
# The travel's heading is read over the clip's first frames (1.4 s at the model's 12 fps), while the body still faces
# much as it did at the first frame, which the character frame is defined by: a longer clip may turn or circle later.
HEADING_FRAMES = 17


def quarter_turn_residual_deg(anchors: torch.Tensor) -> float:
    """How far (degrees, -45 to 45) a clip's root travel over its first `HEADING_FRAMES` frames heads from the
    nearest of forwards, backwards and sideways in the character frame (facing -Y): anchors `(1, T, J, 3)`."""
    last = min(anchors.shape[1], HEADING_FRAMES) - 1
    travel = anchors[0, last, 0, :2] - anchors[0, 0, 0, :2]
    heading = math.degrees(math.atan2(float(travel[0]), -float(travel[1])))
    return (heading + 45.0) % 90.0 - 45.0


def turned_about_first_root(anchors: torch.Tensor, angle_deg: float) -> torch.Tensor:
    """Character-frame anchors `(1, T, J, 3)` turned by `angle_deg` about the vertical through the first root."""
    angle = math.radians(angle_deg)
    cos, sin = math.cos(angle), math.sin(angle)
    turn = anchors.new_tensor([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]])
    origin = anchors[0, 0, 0] * anchors.new_tensor([1.0, 1.0, 0.0])
    return torch.einsum("ij,btkj->btki", turn, anchors - origin) + origin


def travelling_anchors(pose: torch.Tensor, joints_px: torch.Tensor, root: torch.Tensor, image_width: int,
                       image_height: int, smooth_frames: float) -> torch.Tensor:
    """A clip's root-relative view-frame pose `(T, 22, 3)`, 2D joints `(T, >=22, 2)` (frame pixels) and root head
    readings `(T, 3)` -> its anchors in the character frame `(1, T, 22, 3)`: `character_frame_anchors` of
    `root_from_track` for a clip that stays put over its first `HEADING_FRAMES` frames. A clip that travels there is
    read at the focal length, about a typical lens's (`TYPICAL_VERTICAL_FOV_DEG`), whose travel heads closest to a
    quarter turn of the encoder's facing, each weighed by its spread (`FOCAL_LOG_SIGMA`; `FACING_SIGMA_DEG` with
    `HEADING_SIGMA_DEG`), and turned towards that quarter turn by the share the travel's heading earns against the
    facing. Differentiable in the pose (the focal length and the turn are chosen without gradients)."""
    def read(focal: float | None = None) -> torch.Tensor:
        track = root_from_track(joints_px, pose, root, image_width, smooth_frames, focal=focal)
        return character_frame_anchors(pose[None], track[None])

    with torch.no_grad():
        depth = root_from_track(joints_px, pose, root, image_width, smooth_frames, travel_noise=0.0)[:, 1]
    if float((depth[:HEADING_FRAMES] - depth[0]).abs().max()) <= TRAVELLING_M:
        return read()
    with torch.no_grad():
        typical = image_height / 2 / math.tan(math.radians(TYPICAL_VERTICAL_FOV_DEG) / 2)
        disagreement_sigma = math.hypot(FACING_SIGMA_DEG, HEADING_SIGMA_DEG)

        def scored(log_ratio: float) -> tuple[float, float, float]:  # (cost, log focal ratio, heading residual)
            residual = quarter_turn_residual_deg(read(typical * math.exp(log_ratio)))
            return (log_ratio / FOCAL_LOG_SIGMA) ** 2 + (residual / disagreement_sigma) ** 2, log_ratio, residual

        _, log_ratio, residual = min(scored(step) for step in FOCAL_STEPS)
    travel_share = FACING_SIGMA_DEG ** 2 / (FACING_SIGMA_DEG ** 2 + HEADING_SIGMA_DEG ** 2)
    return turned_about_first_root(read(typical * math.exp(log_ratio)), -residual * travel_share)


__all__ = ["quarter_turn_residual_deg", "travelling_anchors", "turned_about_first_root"]
