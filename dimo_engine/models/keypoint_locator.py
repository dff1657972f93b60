"""2D keypoint locator: finds the SMPL-H joints (and from them the hand boxes) in driving frames.

A small heatmap conv net, trained later on the project's own renders (annotations.npz `joints2d`). Until a
checkpoint says `trained=True`, the pipeline refuses to guess hand boxes with it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from kornia.geometry.subpix import spatial_expectation2d
from torch import nn

from blender_addon.core.annotations import SMPLH_LEFT_HAND, SMPLH_RIGHT_HAND
from blender_addon.core.annotations import hand_boxes as annotated_hand_boxes
from dimo_engine.errors import InputError


class KeypointLocator(ModelMixin, ConfigMixin):
    """Heatmap network for the 52 SMPL-H joints.

    Args:
        image_size: frames are resized to this square size.
        channels: widths of the stride-2 conv stages (heatmaps come out at image_size / 2**len(channels)).
        num_joints: joints predicted, in SMPL-H order.
        trained: set by training when the weights are fit; the pipeline only uses a trained locator.
        hand_padding: no longer read (hand boxes follow the renderer's recipe); accepted so checkpoints saved
            with it load without a warning.
    """

    @register_to_config
    def __init__(
        self,
        image_size: int = 128,
        channels: tuple[int, ...] = (32, 64, 96),
        num_joints: int = 52,
        trained: bool = False,
        hand_padding: float = 0.35,
    ):
        super().__init__()
        layers, width = [], 3
        for out in channels:
            layers += [nn.Conv2d(width, out, 3, stride=2, padding=1), nn.GroupNorm(8, out), nn.SiLU(),
                       nn.Conv2d(out, out, 3, padding=1), nn.GroupNorm(8, out), nn.SiLU()]
            width = out
        self.backbone = nn.Sequential(*layers)
        self.heatmap_head = nn.Conv2d(width, num_joints, 1)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """frames `(N, 3, H, W)` in [0, 1] -> heatmap logits `(N, J, h, w)` at image_size / stride."""
        size = self.config.image_size
        pixels = F.interpolate(frames.to(self.dtype), size=(size, size), mode="bilinear", antialias=True)
        return self.heatmap_head(self.backbone(pixels * 2.0 - 1.0))

    def locate(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """frames `(F, 3, H, W)` in [0, 1] -> joints2d `(F, J, 2)` pixel (x, y) in the frames' own size (top-left
        origin), confidence `(F, J)` in [0, 1] (peak of the softmax heatmap)."""
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise InputError(f"Keypoint locator got frames of shape {tuple(frames.shape)}; give (F, 3, H, W).")
        logits = self(frames)
        heatmaps = logits.flatten(2).softmax(-1).view_as(logits)  # (F, J, h, w)
        # spatial_expectation2d gives pixel-index coordinates of the heatmap grid; +0.5 moves to the
        # top-left-corner convention before scaling to the frame size.
        expected = spatial_expectation2d(heatmaps, normalized_coordinates=False) + 0.5  # (F, J, 2)
        scale = torch.tensor([frames.shape[-1] / logits.shape[-1], frames.shape[-2] / logits.shape[-2]],
                             device=frames.device, dtype=expected.dtype)
        confidence = heatmaps.flatten(2).amax(-1)
        return expected * scale, confidence

    def hand_boxes(self, frames: torch.Tensor) -> torch.Tensor:
        """frames `(F, 3, H, W)` -> hand boxes `(F, 2, 4)` [x0, y0, x1, y1] pixels (left, right) around the
        located wrist and finger joints, by the recipe the clip renderer annotates the training hands with
        (`blender_addon.core.annotations.hand_boxes`), so the hand encoder sees the crops it was trained on."""
        if self.config.num_joints < 52:
            raise InputError("This keypoint locator has no finger joints; give hand boxes with the driving video.")
        joints, _ = self.locate(frames)
        pixels = joints.detach().double().cpu().numpy()  # (F, 52, 2)
        located = np.ones(pixels.shape[:2], dtype=bool)  # a joint found in the frame is in front of its camera
        boxes = annotated_hand_boxes(pixels, located, [SMPLH_LEFT_HAND, SMPLH_RIGHT_HAND], max(frames.shape[-2:]))
        return torch.from_numpy(boxes).to(device=joints.device, dtype=joints.dtype)
