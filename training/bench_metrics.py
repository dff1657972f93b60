"""The cross-view benchmark's metrics, on frames `(F, 3, H, W)` floats in [0, 1]: PSNR and SSIM (torchmetrics),
the silhouette IoU of a generated frame's foreground (what differs from the clip's background plate) against the
rendered person mask, and the 2D joint error in pixels over the visible joints. `training/benchmark.py` scores
generations with them; `training/bench_report.py` pools them."""

from __future__ import annotations

import math

import numpy as np
import torch

METRICS = ("psnr", "ssim", "iou", "joint_error_px")
PSNR_CAP_DB = 100.0  # identical frames have infinite PSNR; averages need a finite number
FOREGROUND_THRESHOLD = 0.12  # max RGB difference to the background plate above which a pixel is the person's


def psnr(generated: torch.Tensor, truth: torch.Tensor, cap_db: float = PSNR_CAP_DB) -> float:
    """PSNR in dB over a whole clip, capped at `cap_db` (identical clips)."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    value = peak_signal_noise_ratio(generated.float(), truth.float(), data_range=1.0)
    return float(torch.nan_to_num(value, posinf=cap_db).clamp(max=cap_db))


def ssim(generated: torch.Tensor, truth: torch.Tensor) -> float:
    """Mean SSIM over the frames of a clip (Gaussian window 11, torchmetrics' defaults)."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    return float(structural_similarity_index_measure(generated.float(), truth.float(), data_range=1.0))


def foreground_masks(frames: torch.Tensor, backgrounds: torch.Tensor, threshold: float = FOREGROUND_THRESHOLD
                     ) -> torch.Tensor:
    """Frames and their background plates `(F, 3, H, W)` -> bool `(F, H, W)`: pixels whose largest channel
    difference to the background exceeds `threshold`, opened with a 3x3 kernel so lone noisy pixels drop out."""
    from kornia.morphology import opening

    difference = (frames.float() - backgrounds.float()).abs().amax(1, keepdim=True)  # (F, 1, H, W)
    masks = (difference > threshold).float()
    return opening(masks, torch.ones(3, 3))[:, 0] > 0.5


def silhouette_iou(predicted: torch.Tensor, truth: torch.Tensor) -> float:
    """IoU of two bool masks `(F, H, W)` pooled over the clip; 1.0 when both are empty."""
    predicted, truth = predicted.bool(), truth.bool()
    union = (predicted | truth).sum()
    return 1.0 if int(union) == 0 else float((predicted & truth).sum() / union)


def joint_error(predicted: torch.Tensor, truth: torch.Tensor, visible: torch.Tensor) -> float:
    """Mean pixel distance of predicted `(F, J, 2)` to true `(F, J, 2)` joints over the visible ones `(F, J)`;
    NaN when no joint is visible."""
    visible = torch.as_tensor(visible).bool()
    if not bool(visible.any()):
        return math.nan
    distances = torch.linalg.vector_norm(torch.as_tensor(predicted).float() - torch.as_tensor(truth).float(), dim=-1)
    return float(distances[visible].mean())



def mean_of(values) -> float:
    """Mean of the numbers that are not NaN (a target with no visible joint has no joint error); NaN if none."""
    values = [v for v in values if not math.isnan(v)]
    return float(np.mean(values)) if values else math.nan
