"""The driving pose fitted to the driving video's own silhouettes: where a video whose alpha is the person corrects
the body encoder's reading of it.

The body encoder reads a joint to 1-3 px in a 128 px frame (the arms worst), yet a keyed video shows where the limbs
are. Per clip, the pose's image-plane parts (sideways, and up as the driving camera sees it; depth is not in a
silhouette) move so that the body proxy's capsules (`character_layer.PROXY_RADII`), drawn by an orthographic
camera fitted to the encoder's 2D joints, cover the alpha; a prior keeps each joint near the encoder's answer and
steady from frame to frame, and the 2D joints keep their say. The camera's scale and place per frame are fitted
alongside, so the fit never changes the body's size or travel (those come from `root_from_track`).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from dimo_engine.character_layer import PROXY_RADII, crop_boxes, proxy_segments, soft_capsules
from dimo_engine.person_crop import person_box_from_alpha, square_box

FIT_STEPS = 100
FIT_CELLS = 48  # the silhouettes' resolution over each frame's square around the person
FIT_LEARNING_RATE = 1e-2  # metres (and log-scale, pixels) a step
PRIOR_SIGMA_M = 0.05  # a joint's move is measured in these
PRIOR_WEIGHT = 0.1  # on the mean squared move, in PRIOR_SIGMA_M units
STEADY_WEIGHT = 0.01  # on the mean squared change of the move between frames, in the same units
JOINTS_2D_WEIGHT = 30.0  # on the mean squared distance to the encoder's 2D joints, in crop sides
PITCHES_DEG = range(-10, 42, 2)  # the driving camera's pitch is searched over these (looking down is positive)


def orthographic_driving_camera(pose: torch.Tensor, joints_px: torch.Tensor
                                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The orthographic camera that best takes a clip's root-relative view-frame pose `(T, J, 3)` (right, forward,
    up) to its 2D joints `(T, J, 2)` (frame pixels, y down), by least squares: one pitch for the clip, a scale and
    an offset a frame. -> (its right axis `(3,)`, its up axis `(3,)`, scale `(T,)` px per metre, offset `(T, 2)`)."""
    right = pose.new_tensor([1.0, 0.0, 0.0])
    centred_2d = joints_px - joints_px.mean(1, keepdim=True)
    best = None
    for pitch in PITCHES_DEG:
        up = pose.new_tensor([0.0, math.sin(math.radians(pitch)), math.cos(math.radians(pitch))])
        image = torch.stack([pose @ right, -(pose @ up)], dim=-1)  # (T, J, 2) metres, y down
        centred = image - image.mean(1, keepdim=True)
        scale = (centred * centred_2d).sum((1, 2)) / centred.pow(2).sum((1, 2)).clamp_min(1e-6)
        residual = float((centred_2d - scale[:, None, None] * centred).pow(2).sum())
        if best is None or residual < best[0]:
            offset = joints_px.mean(1) - scale[:, None] * image.mean(1)
            best = (residual, up, scale, offset)
    _, up, scale, offset = best
    return right, up, scale, offset


def person_cells(alpha: np.ndarray, clip_box) -> tuple[torch.Tensor, torch.Tensor]:
    """A driving video's alpha, uint8 `(T, H, W)` -> the person `(T, FIT_CELLS, FIT_CELLS)` in [0, 1], each frame cut
    in the padded square around its own silhouette (`person_crop.square_box`: a body crossing the frame keeps the
    resolution the video gives it), and those boxes `(T, 4)` [x0, y0, x1, y1] (frame pixels); a frame without the
    person takes the clip's box `clip_box`."""
    height, width = alpha.shape[1:]
    found = [person_box_from_alpha(frame) for frame in alpha]
    boxes = torch.tensor([tuple(clip_box) if box is None else square_box(box, width, height) for box in found],
                         dtype=torch.float32)  # (T, 4)
    person = crop_boxes(torch.from_numpy(np.ascontiguousarray(alpha))[:, None].float() / 255.0, boxes, FIT_CELLS)
    return person[:, 0], boxes


@torch.enable_grad()
def fit_pose_to_silhouettes(pose: torch.Tensor, joints_px: torch.Tensor, person: torch.Tensor, boxes: torch.Tensor,
                            steps: int = FIT_STEPS) -> torch.Tensor:
    """A clip's root-relative view-frame pose `(T, 22, 3)` (metres) moved in the driving camera's image plane so the
    body proxy covers the person: `joints_px` `(T, >=22, 2)` the encoder's 2D joints (frame pixels), `person`
    `(T, FIT_CELLS, FIT_CELLS)` in [0, 1] the video's alpha in `boxes` `(T, 4)` [x0, y0, x1, y1] (frame pixels;
    both from `person_cells`). -> the fitted pose `(T, 22, 3)`, root-relative, its depths as they were."""
    pose = pose.detach().float()
    joints_px = joints_px[:, :22].detach().float().to(pose)
    right, up, scale, offset = orthographic_driving_camera(pose, joints_px)
    frames = pose.shape[0]
    boxes = boxes.to(pose)
    side = (boxes[:, 2] - boxes[:, 0])[:, None, None]  # (T, 1, 1)
    truth = person.to(pose).reshape(frames, -1)  # (T, C*C)
    to_cells = (FIT_CELLS - 1) / (side - 1).clamp_min(1e-6)  # as `crop_boxes` samples the frame
    radii = torch.tensor(PROXY_RADII, dtype=pose.dtype, device=pose.device)  # (G, 2) metres
    sideways = torch.zeros(frames, 22, device=pose.device, requires_grad=True)  # metres along `right`
    upwards = torch.zeros(frames, 22, device=pose.device, requires_grad=True)  # metres along `up`
    log_scale = torch.zeros(frames, device=pose.device, requires_grad=True)
    shift = torch.zeros(frames, 2, device=pose.device, requires_grad=True)  # pixels
    optimizer = torch.optim.Adam([sideways, upwards, log_scale, shift], lr=FIT_LEARNING_RATE)

    pelvis_kept = torch.ones(22, device=pose.device)
    pelvis_kept[0] = 0.0  # the pose stays root-relative; the frames' shift moves the whole body

    def moved() -> torch.Tensor:
        return pose + (sideways * pelvis_kept)[..., None] * right + (upwards * pelvis_kept)[..., None] * up

    def to_image(points: torch.Tensor) -> torch.Tensor:  # (T, P, 3) -> (T, P, 2) frame pixels, the camera as fitted
        return torch.stack([points @ right, -(points @ up)], dim=-1) * (scale * log_scale.exp())[:, None, None] + \
            (offset + shift)[:, None]

    for _ in range(steps):
        fitted = moved()
        starts, ends = proxy_segments(fitted)
        radius = radii[None] * (scale * log_scale.exp())[:, None, None] * to_cells  # (T, G, 2) cells
        coverage = soft_capsules((to_image(starts) - boxes[:, None, :2]) * to_cells,
                                 (to_image(ends) - boxes[:, None, :2]) * to_cells, radius[..., 0], radius[..., 1],
                                 FIT_CELLS)  # (T, C*C)
        overlap = (coverage * truth).sum(1)
        soft_iou = overlap / (coverage + truth - coverage * truth).sum(1).clamp_min(1e-6)
        joints_2d = ((to_image(fitted) - joints_px) / side).pow(2).sum(-1).mean()
        moves = (sideways.pow(2) + upwards.pow(2)).mean() / PRIOR_SIGMA_M ** 2
        changes = ((sideways[1:] - sideways[:-1]).pow(2) + (upwards[1:] - upwards[:-1]).pow(2)).mean() / \
            PRIOR_SIGMA_M ** 2 if frames > 1 else moves * 0
        loss = (1 - soft_iou).mean() + JOINTS_2D_WEIGHT * joints_2d + PRIOR_WEIGHT * moves + STEADY_WEIGHT * changes
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return moved()


__all__ = ["fit_pose_to_silhouettes", "orthographic_driving_camera", "person_cells"]
