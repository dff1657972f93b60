"""2D annotations of a rendered view (docs/formats.md, annotations.npz): joints projected with the
view's camera path, their visibility, hand boxes for the hand encoder and the person box.
numpy only; pixel origin at the top-left image corner."""

from __future__ import annotations

import numpy as np

# SMPL-H: wrist, then the 15 finger joints of that hand.
SMPLH_LEFT_HAND = [20] + list(range(22, 37))
SMPLH_RIGHT_HAND = [21] + list(range(37, 52))


# Depth (metres) a joint needs to count as in front of the camera, and the least depth it is divided by, so a
# joint on the camera plane still gets a finite pixel in joints2d.
IN_FRONT_DEPTH = 1e-6
MIN_DIVISOR_DEPTH = 1e-9
# alpha above this (of 255) is the person, soft edges included: the person box's threshold everywhere
PERSON_ALPHA_THRESHOLD = 16


def project_joints(joints: np.ndarray, camera_path):
    """joints (F,J,3) character frame, seen by `camera_path` (CameraPath.project) ->
    pixels (F,J,2), visible (F,J) (in front of the camera and inside the image), in_front (F,J)."""
    uv, depth = camera_path.project(joints, min_depth=MIN_DIVISOR_DEPTH)
    in_front = depth > IN_FRONT_DEPTH
    inside = (uv[..., 0] >= 0) & (uv[..., 0] < camera_path.width) & (uv[..., 1] >= 0) & (uv[..., 1] < camera_path.height)
    return uv, in_front & inside, in_front


def hand_boxes(joints2d: np.ndarray, in_front: np.ndarray, hands, image_size: int) -> np.ndarray:
    """(F,2,4) square pixel boxes [x0,y0,x1,y1] around each hand's joints (`hands`: two index lists,
    left then right), padded by 30% and 2% of the image; zeros where a hand has no joint in front."""
    boxes = np.zeros((joints2d.shape[0], 2, 4))
    for side, indices in enumerate(hands):
        if len(indices) == 0:
            continue
        for frame in range(joints2d.shape[0]):
            points = joints2d[frame, indices][in_front[frame, indices]]
            if len(points) == 0:
                continue
            low, high = points.min(axis=0), points.max(axis=0)
            centre = 0.5 * (low + high)
            half = 0.65 * max(high - low) + 0.02 * image_size
            boxes[frame, side] = [centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half]
    return boxes


def alpha_box(alpha: np.ndarray, threshold: int = PERSON_ALPHA_THRESHOLD) -> tuple[float, float, float, float] | None:
    """The person's box: [x0, y0, x1, y1] pixel edges around every pixel whose uint8 alpha exceeds `threshold`, in
    one frame (H, W) or in any frame of a clip (F, H, W); None when the person is nowhere. The one recipe the
    renderer's annotations and the engine's person crop (training and inference) share."""
    mask = np.asarray(alpha) > threshold
    if mask.ndim == 3:
        mask = mask.any(axis=0)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)


def person_box(alpha: np.ndarray) -> np.ndarray:
    """One frame's person box (`alpha_box` of alpha (H, W) uint8) as an array; zeros when empty."""
    box = alpha_box(alpha)
    return np.zeros(4) if box is None else np.array(box, dtype=np.float64)


def view_annotations(joints: np.ndarray, camera_path, person_boxes, hands) -> dict:
    """All arrays of one view's annotations.npz."""
    width, height = camera_path.width, camera_path.height
    joints2d, visible, in_front = project_joints(joints, camera_path)
    return {
        "joints2d": joints2d.astype(np.float32),
        "joints_visible": visible,
        "hand_boxes": hand_boxes(joints2d, in_front, hands, max(width, height)).astype(np.float32),
        "person_box": np.stack(person_boxes).astype(np.float32),
    }
