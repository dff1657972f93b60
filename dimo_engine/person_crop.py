"""The one person crop, the same at training and at inference: one padded square box per clip around
the person (from alpha, or from a trained keypoint locator), cut out over neutral grey and resized.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from blender_addon.core.annotations import alpha_box

# Neutral grey behind a person cut out by alpha, and in the padding of letterboxed frames.
BACKGROUND = 0.5
PERSON_PADDING = 0.15  # fraction of the person box added on every side


def person_box_from_alpha(alpha: np.ndarray) -> tuple[float, float, float, float] | None:
    """Box `[x0, y0, x1, y1]` around every pixel the person covers in any frame of alpha (F, H, W).

    One box for the whole clip, so the person's travel across the frame stays in the motion. The recipe is the
    renderer's annotation box (`blender_addon.core.annotations.alpha_box`), over the clip.
    """
    return alpha_box(alpha)


def square_box(box, image_width: int, image_height: int, padding: float = PERSON_PADDING) -> tuple[int, int, int, int]:
    """The padded square around `box` (may reach outside the image; the outside is filled with background)."""
    if box is None:
        # No person found: keep the whole frame, letterboxed to a square.
        box = (0.0, 0.0, float(image_width), float(image_height))
        padding = 0.0
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0) * (1.0 + 2.0 * padding)
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    half = max(side / 2.0, 1.0)
    return int(np.floor(cx - half)), int(np.floor(cy - half)), int(np.ceil(cx + half)), int(np.ceil(cy + half))


def crop_frames(frames: np.ndarray, box: tuple[int, int, int, int], height: int, width: int) -> torch.Tensor:
    """Cut `box` out of uint8 frames (F, H, W, C), composite alpha over grey, resize: float (F, 3, height, width) in [0, 1]."""
    pixels = torch.from_numpy(np.ascontiguousarray(frames)).float().div_(255.0)  # (F, H, W, C)
    pixels = pixels.permute(0, 3, 1, 2)  # (F, C, H, W)
    if pixels.shape[1] == 4:
        alpha = pixels[:, 3:4]
        pixels = pixels[:, :3] * alpha + BACKGROUND * (1.0 - alpha)
    image_height, image_width = pixels.shape[-2:]
    x0, y0, x1, y1 = box
    pad = (max(0, -x0), max(0, x1 - image_width), max(0, -y0), max(0, y1 - image_height))
    pixels = F.pad(pixels, pad, value=BACKGROUND)
    pixels = pixels[:, :, y0 + pad[2] : y1 + pad[2], x0 + pad[0] : x1 + pad[0]]
    resized = F.interpolate(pixels, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return resized.clamp_(0.0, 1.0)


def person_box_from_locator(keypoint_locator, frames: np.ndarray, min_confidence: float = 0.05):
    """Box around the joints a trained keypoint locator finds in uint8 frames (F, H, W, C), or None."""
    if keypoint_locator is None or not bool(getattr(keypoint_locator.config, "trained", False)):
        return None
    image_height, image_width = frames.shape[1:3]
    whole = square_box(None, image_width, image_height)
    side = whole[2] - whole[0]
    size = int(keypoint_locator.config.image_size)
    with torch.no_grad():
        pixels = crop_frames(frames, whole, size, size).to(keypoint_locator.device)  # (F, 3, size, size)
        joints, confidence = keypoint_locator.locate(pixels)  # (F, J, 2), (F, J)
    confident = confidence > min_confidence
    if not bool(confident.any()):
        return None
    points = joints[confident].double().cpu().numpy() * (side / size) + np.array([whole[0], whole[1]])
    x0, y0 = points.min(0)
    x1, y1 = points.max(0)
    # Joints sit inside the body: grow the box to reach the head top, hands and feet.
    grow = 0.15 * max(x1 - x0, y1 - y0)
    return float(x0 - grow), float(y0 - grow), float(x1 + grow), float(y1 + grow)
