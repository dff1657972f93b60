"""Where a driving video becomes motion tokens: resample to the model's fps, crop the person,
encode in overlapping windows blended into one consistent token sequence.

Also the content hash that keys the motion cache, and the window arithmetic the generation
loop shares (long clips are generated window by window and cross-faded in the overlaps).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dimo_engine.errors import InputError
from dimo_engine.video_io import MAX_FRAMES, MAX_SIDE, read_video_clip, resample_indices

logger = logging.getLogger(__name__)

# Frames shared by neighbouring windows; cross-fading over them hides the seams.
DEFAULT_OVERLAP = 4
# Neutral grey behind a person cut out by alpha, and in the padding of letterboxed frames.
BACKGROUND = 0.5
PERSON_PADDING = 0.15  # fraction of the person box added on every side
MIN_DRIVING_FRAMES = 2
# Longer side driving frames are decoded at: the encoders crop the person to 64 px (hands to 16 px) and the
# keypoint locator reads the whole frame smaller still, so more pixels would only cost memory.
DRIVING_SIDE = 512
# Frames at the model's fps one job generates per camera (50 s at 12 fps): every frame of every camera is
# held until the job ends, so a longer clip is refused, before it is decoded.
MAX_MOTION_FRAMES = 600


def content_hash(path: str | os.PathLike) -> str:
    """SHA-256 of a driving input's bytes (a file, or a folder's image files in name order)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(file.name.encode() + b"\0")
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def check_driving_length(source_frames: int, fps: float, model_fps: float, source: str = "driving video") -> int:
    """The clip's length in frames at `model_fps`; InputError saying what is needed when that is under 2."""
    count = int(resample_indices(source_frames, fps, model_fps).size) if source_frames > 0 else 0
    if source_frames >= MIN_DRIVING_FRAMES and count >= MIN_DRIVING_FRAMES:
        return count
    # The fewest source frames that last MIN_DRIVING_FRAMES ticks of the model's clock.
    needed = max(MIN_DRIVING_FRAMES, int(np.floor((MIN_DRIVING_FRAMES - 1) * fps / model_fps + 1e-6)) + 1)
    at_model_fps = "" if abs(fps - model_fps) < 1e-6 else f", which is {count} at the model's {model_fps:g} fps"
    raise InputError(f"{source} has {source_frames} frame(s) at {fps:g} fps{at_model_fps}, and motion needs at least "
                     f"{MIN_DRIVING_FRAMES} frames at {model_fps:g} fps; give at least {needed} frames at {fps:g} fps")


def read_driving(path: str | os.PathLike, model_fps: float, fps: float | None = None, max_side: int = MAX_SIDE,
                 max_frames: int = MAX_FRAMES, max_motion_frames: int | None = MAX_MOTION_FRAMES,
                 source: str | None = None) -> tuple[np.ndarray, float]:
    """A driving video decoded once, as a stream, for the motion encoders: `(frames uint8 (T, H, W, C), fps)` at
    most `model_fps` and `DRIVING_SIDE` px a side, alpha kept; a clip over `max_motion_frames` at the model's
    fps is refused before decoding, one under 2 frames says how many are needed."""
    clip = read_video_clip(path, fps=fps, max_side=max_side, max_frames=max_frames, model_fps=model_fps,
                           fit_side=DRIVING_SIDE, max_model_frames=max_motion_frames)
    check_driving_length(clip.source_frames, clip.source_fps, model_fps, source or f"driving video {path}")
    return clip.frames, clip.fps


def window_starts(total: int, window: int, overlap: int = DEFAULT_OVERLAP) -> list[int]:
    """First frame of each window of `window` frames covering `total` frames, neighbours sharing `overlap`."""
    if total <= window:
        return [0]
    stride = max(1, window - overlap)
    starts = list(range(0, total - window, stride))
    return starts + [total - window]


def blend_weights(start: int, window: int, total: int, overlap: int) -> np.ndarray:
    """(window,) cross-fade weights: ramps inside overlaps, 1 where a window is alone."""
    ramp = np.minimum(np.arange(1, window + 1), np.arange(window, 0, -1)) / (overlap + 1)
    weights = np.minimum(1.0, ramp)
    if start == 0:
        weights[: window // 2] = 1.0
    if start + window >= total:
        weights[window // 2 :] = 1.0
    return weights


def pad_to_window(sequence, window: int, axis: int = 0):
    """Hold the last frame so a clip shorter than one window fills it (numpy or torch)."""
    length = sequence.shape[axis]
    if length >= window:
        return sequence
    index = [slice(None)] * sequence.ndim
    index[axis] = slice(length - 1, length)
    last = sequence[tuple(index)]
    repeats = [1] * sequence.ndim
    repeats[axis] = window - length
    if isinstance(sequence, torch.Tensor):
        return torch.cat([sequence, last.repeat(*repeats)], dim=axis)
    return np.concatenate([sequence, np.tile(last, repeats)], axis=axis)


def person_box_from_alpha(alpha: np.ndarray, threshold: int = 16) -> tuple[float, float, float, float] | None:
    """Box `[x0, y0, x1, y1]` around every pixel the person covers in any frame of alpha (F, H, W).

    One box for the whole clip, so the person's travel across the frame stays in the motion.
    """
    mask = alpha > threshold
    if not mask.any():
        return None
    rows = np.flatnonzero(mask.any(axis=(0, 2)))
    cols = np.flatnonzero(mask.any(axis=(0, 1)))
    return float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)


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


def prepare_driving_frames(frames: np.ndarray, fps: float, model_fps: float, height: int, width: int,
                           source: str = "driving video", keypoint_locator=None) -> torch.Tensor:
    """Driving frames uint8 (F, H, W, C) at `fps` -> model input float (T, 3, height, width) at `model_fps`.

    The person is found from the alpha channel when there is one, else by a trained keypoint
    locator; without either the whole frame is kept, letterboxed to a square.
    """
    check_driving_length(frames.shape[0], fps, model_fps, source)
    frames = frames[resample_indices(frames.shape[0], fps, model_fps)]
    if frames.shape[-1] == 4:
        box = person_box_from_alpha(frames[..., 3])
    else:
        box = person_box_from_locator(keypoint_locator, frames)
    return crop_frames(frames, square_box(box, frames.shape[2], frames.shape[1]), height, width)


def blend_windows(chunks: list, starts: list[int], total: int, overlap: int, axis: int = 0):
    """Cross-fade per-window chunks (window frames on `axis`) into one sequence of `total` frames."""
    first = chunks[0]
    window = first.shape[axis]
    is_torch = isinstance(first, torch.Tensor)
    shape = list(first.shape)
    shape[axis] = total
    accumulated = torch.zeros(shape, dtype=torch.float32, device=first.device) if is_torch else np.zeros(shape, np.float64)
    weight_sum = np.zeros(total)
    for chunk, start in zip(chunks, starts):
        count = min(window, total - start)
        weights = blend_weights(start, window, total, overlap)[:count]
        view = [1] * len(shape)
        view[axis] = count
        index = [slice(None)] * len(shape)
        index[axis] = slice(start, start + count)
        chunk_index = list(index)
        chunk_index[axis] = slice(0, count)
        if is_torch:
            w = torch.as_tensor(weights, dtype=torch.float32, device=first.device).view(view)
            accumulated[tuple(index)] += chunk[tuple(chunk_index)].float() * w
        else:
            accumulated[tuple(index)] += chunk[tuple(chunk_index)] * weights.reshape(view)
        weight_sum[start : start + count] += weights
    weight_sum = np.maximum(weight_sum, 1e-12)  # frames no window reached yet stay zero, not NaN
    view = [1] * len(shape)
    view[axis] = total
    if is_torch:
        return (accumulated / torch.as_tensor(weight_sum, dtype=torch.float32, device=first.device).view(view)).to(first.dtype)
    return (accumulated / weight_sum.reshape(view)).astype(first.dtype)


def slice_motion(motion, start: int, stop: int, window: int):
    """Frames [start, stop) of motion tokens (B, T, K, D), padded by holding the last frame to `window`."""
    return dataclasses.replace(
        motion,
        body=pad_to_window(motion.body[:, start:stop], window, axis=1),
        hands=pad_to_window(motion.hands[:, start:stop], window, axis=1),
    )


def motion_num_frames(motion) -> int:
    return int(motion.body.shape[1])


def has_trained_locator(pipe) -> bool:
    locator = getattr(pipe, "keypoint_locator", None)
    return locator is not None and bool(getattr(locator.config, "trained", False))


def whole_frame_hand_boxes(num_frames: int, size) -> torch.Tensor:
    """Hand boxes (F, 2, 4) covering the whole crop: the stand-in when no trained locator can find the hands."""
    height, width = int(size[0]), int(size[1])
    return torch.tensor([0.0, 0.0, width, height]).expand(num_frames, 2, 4).clone()


def encode_driving(pipe, frames: np.ndarray, fps: float, overlap: int = DEFAULT_OVERLAP, source: str = "driving video"):
    """Motion tokens for a whole driving clip: the pipeline's own `encode_driving_clip` when it has one (the
    default model encodes frame by frame, in the character frame of the clip's first frame), else one
    `pipe.encode_motion` call per overlapping window, blended."""
    if hasattr(pipe, "encode_driving_clip"):
        return pipe.encode_driving_clip(frames, fps, source=source)
    config = pipe.config
    model_input = prepare_driving_frames(frames, fps, float(config.fps), int(config.height), int(config.width), source,
                                         keypoint_locator=getattr(pipe, "keypoint_locator", None))
    total = model_input.shape[0]
    window = int(config.num_frames)
    starts = window_starts(total, window, overlap)
    device = getattr(pipe, "device", torch.device("cpu"))
    hand_boxes = None if has_trained_locator(pipe) else whole_frame_hand_boxes(window, model_input.shape[-2:])
    if hand_boxes is not None:
        logger.warning("this model has no trained keypoint locator, so hand motion is read from the whole frame")
    pieces = []
    for start in starts:
        chunk = pad_to_window(model_input[start : start + window], window).to(device)  # (window, 3, H, W)
        with torch.no_grad():
            pieces.append(pipe.encode_motion(chunk, hand_boxes=hand_boxes))
    if len(pieces) == 1:
        return slice_motion(pieces[0], 0, total, 0)
    return dataclasses.replace(
        pieces[0],
        body=blend_windows([p.body for p in pieces], starts, total, overlap, axis=1),
        hands=blend_windows([p.hands for p in pieces], starts, total, overlap, axis=1),
    )


def load_motion_file(path: str | os.PathLike, what: str = "motion file"):
    """MotionTokens from a `.safetensors` written by `dimo encode-motion`, or a clear InputError."""
    from dimo_engine.pipelines import MotionTokens

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} {path} does not exist; run 'dimo encode-motion VIDEO --out {path.name}' first")
    try:
        return MotionTokens.load(path)
    except InputError:
        raise
    except Exception as error:  # safetensors raises its own types for truncated or foreign files
        raise InputError(f"{what} {path.name} is not a motion file written by 'dimo encode-motion' "
                         f"({type(error).__name__}); encode the driving video again") from error
