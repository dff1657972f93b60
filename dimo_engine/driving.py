"""Where a driving video becomes motion tokens: resample to the model's fps, crop the person
(`person_crop`), encode in overlapping windows (`frame_windows`) blended into one consistent token
sequence (`motion_file` reads it back once saved). Also the content hash that keys the motion cache
and the length checks of a driving clip.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import torch

from dimo_engine.errors import InputError
from dimo_engine.frame_windows import DEFAULT_OVERLAP, blend_windows, overlapping_window_starts, pad_to_window, slice_motion
from dimo_engine.person_crop import crop_frames, person_box_from_alpha, person_box_from_locator, square_box
from dimo_engine.video_io import MAX_FRAMES, MAX_SIDE, read_video_clip, resample_indices

logger = logging.getLogger(__name__)

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


def has_trained_locator(pipe) -> bool:
    locator = getattr(pipe, "keypoint_locator", None)
    return locator is not None and bool(getattr(locator.config, "trained", False))


def whole_frame_hand_boxes(num_frames: int, size) -> torch.Tensor:
    """Hand boxes (F, 2, 4) covering the whole crop: the stand-in when no trained locator can find the hands."""
    height, width = int(size[0]), int(size[1])
    return torch.tensor([0.0, 0.0, width, height]).expand(num_frames, 2, 4).clone()


def encode_driving(pipe, frames: np.ndarray, fps: float, overlap: int = DEFAULT_OVERLAP, source: str = "driving video",
                   silhouette_fit_steps: int | None = None):
    """Motion tokens for a whole driving clip: the pipeline's own `encode_driving_clip` when it has one (the
    default model encodes frame by frame, in the character frame of the clip's first frame; `silhouette_fit_steps`,
    when given, its fit to the clip's alpha), else one `pipe.encode_motion` call per overlapping window, blended."""
    if hasattr(pipe, "encode_driving_clip"):
        options = {} if silhouette_fit_steps is None else {"silhouette_fit_steps": silhouette_fit_steps}
        return pipe.encode_driving_clip(frames, fps, source=source, **options)
    config = pipe.config
    model_input = prepare_driving_frames(frames, fps, float(config.fps), int(config.height), int(config.width), source,
                                         keypoint_locator=getattr(pipe, "keypoint_locator", None))
    total = model_input.shape[0]
    window = int(config.num_frames)
    starts = overlapping_window_starts(total, window, overlap)
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
