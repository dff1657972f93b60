"""Perspective and appearance augmentation of driving frames, so motion tokens cannot memorise the camera.

One random homography (kornia RandomPerspective + RandomAffine), colour jitter and blur per clip, the same on
all of its frames (a clip is one camera); deterministic from a seed; the image size is kept, and hand boxes
are carried through the same warp so hand crops follow the hands.
"""

from __future__ import annotations

import kornia.augmentation as K
import torch
from kornia.geometry.linalg import transform_points

from dimo_engine.errors import InputError


class DrivingAugmentation:
    """`augment(frames, hand_boxes=None, seed=0) -> (frames, hand_boxes)`.

    frames: `(F, 3, H, W)` or `(B, F, 3, H, W)` float in [0, 1]; hand_boxes: `(F, 2, 4)` or `(B, F, 2, 4)` pixel
    [x0, y0, x1, y1]. Clip b of a batch uses seed + b. Warped boxes are the axis-aligned bounds of the warped
    corners, clipped to the image.
    """

    def __init__(
        self,
        perspective: float = 0.35,
        perspective_p: float = 0.9,
        rotation_deg: float = 12.0,
        translate: float = 0.08,
        scale: tuple[float, float] = (0.85, 1.15),
        shear_deg: float = 6.0,
        brightness: float = 0.25,
        contrast: float = 0.25,
        saturation: float = 0.25,
        hue: float = 0.04,
        blur_sigma: tuple[float, float] = (0.1, 1.5),
        blur_p: float = 0.3,
    ):
        self.geometry = K.AugmentationSequential(
            K.RandomPerspective(distortion_scale=perspective, p=perspective_p, same_on_batch=True),
            K.RandomAffine(degrees=rotation_deg, translate=(translate, translate), scale=scale, shear=shear_deg,
                           p=1.0, same_on_batch=True),
            same_on_batch=True,
        )
        self.appearance = K.AugmentationSequential(
            K.ColorJiggle(brightness, contrast, saturation, hue, p=1.0, same_on_batch=True),
            K.RandomGaussianBlur(kernel_size=5, sigma=blur_sigma, p=blur_p, same_on_batch=True),
            same_on_batch=True,
        )

    def __call__(self, frames: torch.Tensor, hand_boxes: torch.Tensor | None = None, seed: int = 0):
        single = frames.ndim == 4
        if single:
            frames = frames.unsqueeze(0)
            hand_boxes = None if hand_boxes is None else hand_boxes.unsqueeze(0)
        if frames.ndim != 5 or frames.shape[2] != 3:
            raise InputError(f"Augmentation got frames of shape {tuple(frames.shape)}; give (F, 3, H, W) or (B, F, 3, H, W).")
        if hand_boxes is not None and hand_boxes.shape != (*frames.shape[:2], 2, 4):
            raise InputError(f"Hand boxes have shape {tuple(hand_boxes.shape)}; give one (2, 4) box pair per frame.")
        out_frames, out_boxes = [], []
        for index, clip in enumerate(frames):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed + index)
                warped = self.geometry(clip)  # (F, 3, H, W), same homography on every frame
                homography = self.geometry.transform_matrix  # (F, 3, 3)
                out_frames.append(self.appearance(warped).clamp(0.0, 1.0))
            if hand_boxes is not None:
                out_boxes.append(self._warp_boxes(hand_boxes[index], homography, clip.shape[-2:]))
        frames = torch.stack(out_frames)
        boxes = torch.stack(out_boxes) if hand_boxes is not None else None
        if single:
            return frames[0], None if boxes is None else boxes[0]
        return frames, boxes

    @staticmethod
    def _warp_boxes(boxes: torch.Tensor, homography: torch.Tensor, size) -> torch.Tensor:
        """Boxes `(F, 2, 4)` through per-frame homographies `(F, 3, 3)` -> bounding boxes `(F, 2, 4)`."""
        x0, y0, x1, y1 = boxes.to(homography.dtype).unbind(-1)
        corners = torch.stack([torch.stack(c, -1) for c in ((x0, y0), (x1, y0), (x1, y1), (x0, y1))], dim=-2)
        warped = transform_points(homography, corners.flatten(1, 2)).view_as(corners)  # (F, 2, 4, 2)
        low, high = warped.amin(-2), warped.amax(-2)
        limit = torch.tensor([size[1], size[0]], dtype=warped.dtype, device=warped.device)
        low = torch.minimum(torch.maximum(low, torch.zeros_like(low)), limit)
        high = torch.minimum(torch.maximum(high, torch.zeros_like(high)), limit)
        return torch.cat([low, high], dim=-1)
