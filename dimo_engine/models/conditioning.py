"""Where a camera path becomes the DiT's camera input: Plücker ray maps packed per latent frame (Wan-Fun style).

The causal VAE folds frame 0 alone and then 4 frames into each latent frame, so the rays of those 4 frames
are stacked on channels (frame 0 repeated to fill its group) and later pixel-unshuffled to latent resolution.
"""

from __future__ import annotations

import numpy as np
import torch
from einops import rearrange

from dimo_engine.errors import InputError


def camera_ray_maps(camera_path, height: int, width: int, frame_indices=None) -> torch.Tensor:
    """Plücker rays of a `CameraPath` at `height` x `width` -> `(6, F, height, width)` float32.

    `frame_indices` picks frames of the path (default: all). K is rescaled from the path's own image size
    by `dimo_engine.camera.plucker_rays`.
    """
    from dimo_engine.camera import plucker_rays

    K = np.asarray(camera_path.K, dtype=np.float32)
    world_to_camera = np.asarray(camera_path.world_to_camera, dtype=np.float32)
    if frame_indices is not None:
        K, world_to_camera = K[frame_indices], world_to_camera[frame_indices]
    rays = plucker_rays(torch.from_numpy(K), torch.from_numpy(world_to_camera), height, width)  # (F, 6, h, w)
    return rearrange(rays.float(), "f c h w -> c f h w")


def pack_rays_per_latent_frame(rays: torch.Tensor, temporal_factor: int = 4) -> torch.Tensor:
    """Rays `(B, 6, F, H, W)` with F = temporal_factor * k + 1 -> `(B, 6 * temporal_factor, k + 1, H, W)`."""
    num_frames = rays.shape[2]
    if (num_frames - 1) % temporal_factor:
        raise InputError(
            f"Camera rays cover {num_frames} frames; the video needs {temporal_factor}k+1 frames "
            f"(e.g. {temporal_factor + 1}, {2 * temporal_factor + 1}, {4 * temporal_factor + 1})."
        )
    first = rays[:, :, :1].expand(-1, -1, temporal_factor, -1, -1)
    padded = torch.cat([first, rays[:, :, 1:]], dim=2)
    return rearrange(padded, "b c (t g) h w -> b (g c) t h w", g=temporal_factor)


def pack_motion_per_latent_frame(motion_tokens: torch.Tensor, temporal_factor: int = 4) -> torch.Tensor:
    """Motion tokens `(B, F, K, D)` with F = temporal_factor * k + 1 -> `(B, k + 1, temporal_factor, K, D)`,
    the same grouping as the latent frames (frame 0 repeated to fill its group)."""
    num_frames = motion_tokens.shape[1]
    if (num_frames - 1) % temporal_factor:
        raise InputError(
            f"Motion tokens cover {num_frames} frames; the video needs {temporal_factor}k+1 frames "
            f"(e.g. {temporal_factor + 1}, {2 * temporal_factor + 1}, {4 * temporal_factor + 1})."
        )
    first = motion_tokens[:, :1].expand(-1, temporal_factor, -1, -1)
    padded = torch.cat([first, motion_tokens[:, 1:]], dim=1)
    return rearrange(padded, "b (t g) k d -> b t g k d", g=temporal_factor)
