"""Window arithmetic shared by motion encoding and generation: a clip longer than the model's window is
cut into windows that overlap by a few frames, each is processed alone, and the results are cross-faded
in the overlaps into one sequence (numpy or torch, frames on any axis).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

# Frames shared by neighbouring windows; cross-fading over them hides the seams.
DEFAULT_OVERLAP = 4


def overlapping_window_starts(total: int, window: int, overlap: int = DEFAULT_OVERLAP) -> list[int]:
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
