"""How per-frame conditioning meets latent frames: Plücker ray maps and motion tokens grouped per latent frame.

The causal VAE folds frame 0 alone and then 4 frames into each latent frame, so the rays of those 4 frames are
stacked on channels (Wan-Fun style) and the motion tokens of those 4 frames are read by that latent frame; frame 0
is repeated to fill its group. (Rays themselves come from `DiMoPipeline.camera_rays`.)
"""

from __future__ import annotations

import torch
from einops import rearrange

from dimo_engine.errors import InputError


def check_frame_count(num_frames: int, temporal_factor: int, what: str) -> None:
    """InputError unless `num_frames` is a count the causal VAE takes: temporal_factor * k + 1."""
    if num_frames < 1 or (num_frames - 1) % temporal_factor:
        lower = max(1, (num_frames - 1) // temporal_factor * temporal_factor + 1)
        raise InputError(
            f"{what} has {num_frames} frames; the video VAE takes {temporal_factor}k+1 frames "
            f"(e.g. {lower} or {lower + temporal_factor}); trim or pad it."
        )


def pack_rays_per_latent_frame(rays: torch.Tensor, temporal_factor: int = 4) -> torch.Tensor:
    """Rays `(B, 6, F, H, W)` with F = temporal_factor * k + 1 -> `(B, 6 * temporal_factor, k + 1, H, W)`."""
    check_frame_count(rays.shape[2], temporal_factor, "The camera rays")
    first = rays[:, :, :1].expand(-1, -1, temporal_factor, -1, -1)
    padded = torch.cat([first, rays[:, :, 1:]], dim=2)
    return rearrange(padded, "b c (t g) h w -> b (g c) t h w", g=temporal_factor)


def pack_motion_per_latent_frame(motion_tokens: torch.Tensor, temporal_factor: int = 4) -> torch.Tensor:
    """Motion tokens `(B, F, K, D)` with F = temporal_factor * k + 1 -> `(B, k + 1, temporal_factor, K, D)`,
    the same grouping as the latent frames (frame 0 repeated to fill its group)."""
    check_frame_count(motion_tokens.shape[1], temporal_factor, "The motion")
    first = motion_tokens[:, :1].expand(-1, temporal_factor, -1, -1)
    padded = torch.cat([first, motion_tokens[:, 1:]], dim=1)
    return rearrange(padded, "b (t g) k d -> b t g k d", g=temporal_factor)
