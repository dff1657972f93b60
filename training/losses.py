"""Training objective as small pure functions: flow-matching velocity loss, geometric pose loss, annealing, CFG dropout.

The flow-matching parts follow diffusers' SD3/Wan training recipe (timestep density and loss
weighting from `diffusers.training_utils`, target = noise - x0); the annealed geometric loss is
3DiMo's auxiliary supervision of the motion tokens, whose weight reaches exactly 0 at step S.
"""

from __future__ import annotations

import math

import roma
import torch
import torch.nn.functional as F
from diffusers.training_utils import compute_density_for_timestep_sampling, compute_loss_weighting_for_sd3

from dimo_engine.models.motion_encoder import rotmat_from_6d

ANNEAL_SHAPES = ("constant", "linear", "cosine")


def sample_flow_sigmas(
    scheduler,
    batch_size: int,
    weighting_scheme: str = "logit_normal",
    logit_mean: float = 0.0,
    logit_std: float = 1.0,
    mode_scale: float = 1.29,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise levels for a batch from a FlowMatchEulerDiscreteScheduler's training grid.

    Returns (sigmas (B,), timesteps (B,)) picked on the scheduler's grid (so its `shift` applies)
    with the density of `weighting_scheme` ("logit_normal", "mode", "uniform", ...).
    """
    u = compute_density_for_timestep_sampling(
        weighting_scheme, batch_size, logit_mean=logit_mean, logit_std=logit_std, mode_scale=mode_scale, generator=generator
    )  # (B,) in [0, 1]
    num_train_timesteps = scheduler.config.num_train_timesteps
    # the grid the scheduler was built with at training resolution, before any set_timesteps() call
    full_sigmas = torch.linspace(1.0, 1.0 / num_train_timesteps, num_train_timesteps)
    shift = float(getattr(scheduler.config, "shift", 1.0))
    full_sigmas = shift * full_sigmas / (1 + (shift - 1) * full_sigmas)
    indices = (u * num_train_timesteps).long().clamp(0, num_train_timesteps - 1)
    sigmas = full_sigmas[indices]
    return sigmas, sigmas * num_train_timesteps


def noisy_latents(x0: torch.Tensor, noise: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Rectified-flow interpolation x_t = (1 - sigma) x0 + sigma noise, sigma per sample (B,)."""
    sigma = sigmas.reshape(-1, *([1] * (x0.ndim - 1))).to(x0.dtype)
    return (1.0 - sigma) * x0 + sigma * noise


def flow_matching_loss(
    model_pred: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor, sigmas: torch.Tensor, weighting_scheme: str = "none",
    cell_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Weighted MSE of the predicted velocity against noise - x0 (FlowMatchEulerDiscreteScheduler's convention).

    `cell_weights` (B, 1, T, h, w), optional: a weight per latent cell (`person_cell_weights`); each sample's loss is
    then the weighted mean over its cells, so the loss keeps its scale and only the balance between cells moves."""
    target = noise - x0
    weighting = compute_loss_weighting_for_sd3(weighting_scheme, sigmas=sigmas.float())
    weighting = weighting.reshape(-1, *([1] * (x0.ndim - 1)))
    error = weighting * (model_pred.float() - target.float()) ** 2
    if cell_weights is None:
        return error.flatten(1).mean(dim=1).mean()
    cell_weights = cell_weights.float().expand_as(error)
    return ((cell_weights * error).flatten(1).sum(dim=1) / cell_weights.flatten(1).sum(dim=1)).mean()


def person_coverage(masks: torch.Tensor, latent_shape, temporal_factor: int = 4) -> torch.Tensor:
    """Person masks `(B, F, H, W)` in [0, 1] -> how much of each latent cell the person covers, `(B, 1, T, h, w)`.

    Coverage of a cell is the mask's mean over its pixels, the largest over the frames the cell encodes (Wan's causal
    VAE: latent frame 0 is frame 0, latent frame t >= 1 is frames 4t-3 .. 4t)."""
    _, _, num_t, h, w = latent_shape
    coverage = F.adaptive_avg_pool2d(masks.float(), (h, w))  # (B, F, h, w)
    first, rest = coverage[:, :1], coverage[:, 1:]
    if rest.shape[1] != (num_t - 1) * temporal_factor:
        raise ValueError(f"{masks.shape[1]} mask frames do not make {num_t} latent frames of {temporal_factor}.")
    rest = rest.unflatten(1, (num_t - 1, temporal_factor)).amax(dim=2)  # (B, T-1, h, w)
    return torch.cat([first, rest], dim=1).unsqueeze(1)


def person_cell_weights(masks: torch.Tensor, latent_shape, extra_weight: float, temporal_factor: int = 4) -> torch.Tensor:
    """Latent-cell loss weights `(B, 1, T, h, w)` = 1 + extra_weight x `person_coverage`. The person fills ~4 % of a
    training frame, so without this the background dominates the loss and the motion it should follow barely counts."""
    return 1.0 + extra_weight * person_coverage(masks, latent_shape, temporal_factor)


def geometric_pose_loss(pred_6d: torch.Tensor, target_6d: torch.Tensor) -> torch.Tensor:
    """Mean geodesic angle (radians) between predicted and target joint rotations, both 6D (..., 6)."""
    pred, target = rotmat_from_6d(pred_6d.float()), rotmat_from_6d(target_6d.float())
    # The chordal term keeps a gradient where the geodesic's arcsin is flat (identical rotations).
    chordal = (pred - target).pow(2).sum(dim=(-1, -2))
    return roma.rotmat_geodesic_distance(pred, target).mean() + 0.5 * chordal.mean()


def annealed_weight(step: int, initial: float, hold_steps: int, end_step: int, shape: str = "cosine") -> float:
    """Weight of the geometric loss at `step`: `initial` until `hold_steps`, then down to exactly 0 at `end_step`.

    shape "constant" keeps `initial` until `end_step` and drops to 0 there; "linear" and "cosine" ramp down
    between `hold_steps` and `end_step`. For step >= end_step the weight is exactly 0.0, so the caller
    can skip the heads entirely.
    """
    if shape not in ANNEAL_SHAPES:
        raise ValueError(f"annealing shape {shape!r} is unknown; use one of {', '.join(ANNEAL_SHAPES)}.")
    if step >= end_step:
        return 0.0
    if step < hold_steps or shape == "constant":
        return float(initial)
    progress = (step - hold_steps) / max(end_step - hold_steps, 1)  # in [0, 1)
    if shape == "linear":
        return float(initial) * (1.0 - progress)
    return float(initial) * 0.5 * (1.0 + math.cos(math.pi * progress))


def motion_keep_mask(batch_size: int, drop_probability: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B,) bool, False where a sample's motion tokens are dropped (the unconditional branch for CFG)."""
    if drop_probability <= 0:
        return torch.ones(batch_size, dtype=torch.bool)
    return torch.rand(batch_size, generator=generator) >= drop_probability


def silhouette_loss(anchors: torch.Tensor, K: torch.Tensor, world_to_camera: torch.Tensor, alpha: torch.Tensor,
                    cells: int) -> tuple[torch.Tensor, torch.Tensor]:
    """How far the body proxy drawn from body anchors `(F, 22, 3)` (character frame) by a camera (`K` `(F, 3, 3)`,
    `world_to_camera` `(F, 4, 4)`) is from the true silhouette `alpha` `(F, H, W)` in [0, 1]: 1 - soft IoU over
    `cells` x `cells` cells of the padded square around the true silhouette (the box a driving crop would take).
    -> (loss, the hard IoU of coverage > 0.5 against alpha > 0.5, for the log)."""
    from dimo_engine.character_layer import crop_boxes, proxy_capsules, soft_capsules
    from dimo_engine.person_crop import person_box_from_alpha, square_box

    frames, height, width = alpha.shape
    box = square_box(person_box_from_alpha((alpha > 0.5).cpu().numpy()), width, height)
    boxes = torch.tensor(box, dtype=anchors.dtype, device=anchors.device).expand(frames, 4)
    truth = crop_boxes(alpha[:, None].to(anchors), boxes, cells).reshape(frames, -1)
    coverage = soft_capsules(*proxy_capsules(anchors, K, world_to_camera, boxes, cells), cells)
    overlap = (coverage * truth).sum()
    loss = 1 - overlap / (coverage + truth - coverage * truth).sum().clamp_min(1e-6)
    with torch.no_grad():
        drawn, true = coverage > 0.5, truth > 0.5
        iou = (drawn & true).sum() / (drawn | true).sum().clamp_min(1)
    return loss, iou
