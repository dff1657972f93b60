"""Training of the 2D keypoint locator (body, wrist and finger joints) on the renders' `joints2d` annotations.

At inference the locator gives the hand boxes when the user gives none, so it is trained by the same
package on the same clips and exported inside the DiMoPipeline folder (`trained=True` in its config).
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from dimo_engine.clips import ClipDataset
from training.pairs import view_pixels

LOCATOR_BATCH = 8


def locator_batch(clips: ClipDataset, step: int, seed: int, batch_size: int = LOCATOR_BATCH):
    """Random rendered frames of any view: frames (N, 3, H, W) in [0, 1], joints2d (N, J, 2) pixels, visible (N, J)."""
    rng = np.random.default_rng([seed, step, 7])
    frames, joints, visible = [], [], []
    for _ in range(batch_size):
        clip = clips[int(rng.integers(len(clips)))]
        view = list(clip.views.values())[int(rng.integers(len(clip.views)))]
        index = int(rng.integers(clip.num_frames))
        frames.append(view_pixels(view, [index], clip.height, clip.width)[0])
        joints.append(torch.from_numpy(view.annotations["joints2d"][index]).float())
        visible.append(torch.from_numpy(view.annotations["joints_visible"][index]))
    return torch.stack(frames), torch.stack(joints), torch.stack(visible)


def locator_loss(locator, frames: torch.Tensor, joints2d: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """Mean L1 distance of the soft-argmax joints to the annotations over visible joints, in units of the image size."""
    predicted, _ = locator.locate(frames)  # (N, J, 2) pixels of the frames' own size
    joints = min(predicted.shape[1], joints2d.shape[1])
    size = frames.new_tensor([frames.shape[-1], frames.shape[-2]])
    error = ((predicted[:, :joints] - joints2d[:, :joints]) / size).abs().sum(-1)  # (N, J)
    mask = visible[:, :joints].to(error.dtype)
    return (error * mask).sum() / mask.sum().clamp_min(1.0)


def train_keypoint_locator(pipe, clips: ClipDataset, config, accelerator=None):
    """Fit `pipe.keypoint_locator` for `config.locator_steps` steps; returns (the locator marked trained, per-step losses).

    Every process runs the same deterministic steps (the locator is small), so all ranks end with the same weights.
    """
    locator = pipe.keypoint_locator
    device = accelerator.device if accelerator is not None else torch.device("cpu")
    locator.to(device).train()
    optimizer = torch.optim.AdamW(locator.parameters(), lr=config.locator_learning_rate)
    losses = []
    show = accelerator is None or accelerator.is_local_main_process
    for step in tqdm(range(config.locator_steps), desc="keypoint locator", unit="step", disable=not show):
        frames, joints2d, visible = (t.to(device) for t in locator_batch(clips, step, config.seed))
        loss = locator_loss(locator, frames, joints2d, visible)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(locator.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
    locator.register_to_config(trained=True)
    return locator.eval(), losses
