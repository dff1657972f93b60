"""Latent cache: encode every view's training windows (and reference frame) with the VAE once, beside the clip.

Training then reads `views/<view>/latents_<F>f_<H>x<W>.safetensors` instead of running the VAE
encoder. Both paths go through `encode_latent_distribution` and draw x0 = mean + std * eps with
the step's own generator, so a run with the cache gives the same losses as one without.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from tqdm.auto import tqdm

from blender_addon.core.atomic_io import atomic_write
from dimo_engine.clips import Clip, ClipDataset
from training.pairs import REFERENCE_FRAME, latent_cache_path, training_window_starts, view_pixels, window_frame_indices


def vae_cache_tag(vae) -> str:
    """A short fingerprint of the VAE (config and weights): a cache made by another VAE is ignored. Private config
    entries (`_name_or_path`, `_diffusers_version`) are left out: the same VAE loaded from another folder (an exported
    pipeline, the shipped weights) keeps its cache."""
    config = {key: value for key, value in dict(vae.config).items() if not key.startswith("_")}
    digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    with torch.no_grad():
        for name, parameter in sorted(vae.state_dict().items()):
            digest.update(name.encode())
            digest.update(f"{parameter.double().sum().item():.8e},{parameter.double().abs().sum().item():.8e}".encode())
    return digest.hexdigest()[:16]


def _latent_normalisation(vae, channels: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean, std = getattr(vae.config, "latents_mean", None), getattr(vae.config, "latents_std", None)
    if mean is None or std is None or len(mean) != channels:
        return like.new_zeros(1, channels, 1, 1, 1), like.new_ones(1, channels, 1, 1, 1)
    shape = (1, channels, 1, 1, 1)
    return like.new_tensor(mean).view(shape), like.new_tensor(std).view(shape)


@torch.no_grad()
def encode_latent_distribution(vae, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames (B, F, 3, H, W) in [0, 1] -> normalised latent mean and std (B, C, T, h, w), Wan's convention
    (latents - latents_mean) / latents_std."""
    pixels = frames.permute(0, 2, 1, 3, 4).to(vae.dtype) * 2.0 - 1.0  # (B, 3, F, H, W) in [-1, 1]
    distribution = vae.encode(pixels).latent_dist
    mean, std = distribution.mean.float(), distribution.std.float()
    shift, scale = _latent_normalisation(vae, mean.shape[1], mean)
    return (mean - shift) / scale, std / scale


def sample_latents(mean: torch.Tensor, std: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """x0 = mean + std * eps, eps from `generator` (the same draw whether mean/std came from the cache or the VAE)."""
    eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
    return mean + std * eps.to(mean.device)


def cache_clip_latents(clip: Clip, vae, num_frames: int, height: int, width: int, window_stride: int, tag: str,
                       overwrite: bool = False) -> list[Path]:
    """Write the latent cache of every view of `clip`; returns the files written (existing ones with the same tag are kept)."""
    written = []
    starts = training_window_starts(clip.num_frames, num_frames, window_stride)
    for view in clip.views.values():
        path = latent_cache_path(view, num_frames, height, width)
        if path.is_file() and not overwrite and _cache_tag_of(path) == tag:
            continue
        tensors = {}
        for start in starts:
            frames = view_pixels(view, window_frame_indices(start, num_frames, clip.num_frames), height, width)
            mean, std = encode_latent_distribution(vae, frames[None])
            tensors[f"window_{start}_mean"], tensors[f"window_{start}_std"] = mean[0].contiguous(), std[0].contiguous()
        reference = view_pixels(view, [REFERENCE_FRAME], height, width)
        mean, std = encode_latent_distribution(vae, reference[None])
        tensors["reference_mean"], tensors["reference_std"] = mean[0].contiguous(), std[0].contiguous()
        with atomic_write(path) as partial:
            save_file(tensors, str(partial), metadata={"tag": tag, "num_frames": str(num_frames), "height": str(height),
                                                       "width": str(width)})
        written.append(path)
    return written


def _cache_tag_of(path: Path) -> str | None:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as cache:
            return cache.metadata().get("tag")
    except (OSError, ValueError):
        return None


def cache_dataset_latents(clips: ClipDataset, vae, num_frames: int, height: int, width: int, window_stride: int,
                          overwrite: bool = False, rank: int = 0, world_size: int = 1) -> int:
    """Cache every clip of `clips` (clip i on process i % world_size); returns the number of files written."""
    tag = vae_cache_tag(vae)
    count = 0
    indices = range(rank, len(clips), world_size)
    for index in tqdm(indices, desc="caching latents", unit="clip", disable=rank != 0):
        count += len(cache_clip_latents(clips[index], vae, num_frames, height, width, window_stride, tag, overwrite))
    return count
