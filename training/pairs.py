"""View-rich training examples from rendered clips: same-view reconstruction, cross-view reproduction, moving cameras.

Every example is fixed by (seed, sample number) alone, so any process can rebuild the exact batch
of any step: that is what makes `--resume` and multi-process runs reproducible without dataloader state.
Driving frames (and only they) go through the perspective/appearance augmentation.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dimo_engine.clips import Clip, ClipDataset, ClipView

PAIR_KINDS = ("same_view", "cross_view", "moving_camera")
REFERENCE_FRAME = 0  # the reference image is the character at the clip's first frame, seen from a still view


def training_window_starts(clip_frames: int, num_frames: int, stride: int) -> list[int]:
    """Start frames of a clip's training windows, every `stride` frames (the last frames may be left out; unlike
    the engine's `frame_windows.overlapping_window_starts`, which covers every frame); a clip shorter than a
    window has one, padded with its last frame."""
    return list(range(0, max(clip_frames - num_frames, 0) + 1, max(stride, 1)))


def window_frame_indices(start: int, num_frames: int, clip_frames: int) -> np.ndarray:
    return np.minimum(start + np.arange(num_frames), clip_frames - 1)  # (F,)


def view_pixels(view: ClipView, indices, height: int, width: int) -> torch.Tensor:
    """RGB frames of a view as float (F, 3, height, width) in [0, 1] (the person mask in alpha is not needed here)."""
    rgba = torch.from_numpy(view.frames(indices))  # (F, H0, W0, 4) uint8
    frames = rgba[..., :3].permute(0, 3, 1, 2).float() / 255.0  # (F, 3, H0, W0)
    if frames.shape[-2:] != (height, width):
        frames = F.interpolate(frames, size=(height, width), mode="bilinear", antialias=True).clamp(0, 1)
    return frames


def view_masks(view: ClipView, indices, height: int, width: int) -> torch.Tensor:
    """The person mask (the frames' alpha) of a view as float (F, height, width) in [0, 1]."""
    alpha = torch.from_numpy(view.frames(indices)[..., 3]).float()[:, None] / 255.0  # (F, 1, H0, W0)
    if alpha.shape[-2:] != (height, width):
        alpha = F.interpolate(alpha, size=(height, width), mode="area")
    return alpha[:, 0]


def latent_cache_path(view: ClipView, num_frames: int, height: int, width: int) -> Path:
    """Where `cache_latents` stores a view's latents for this example size (beside the clip's frames)."""
    return view.folder / f"latents_{num_frames}f_{height}x{width}.safetensors"


def choose_views(rng: np.random.Generator, views: list[tuple], kind_probabilities) -> tuple[str, object, object, object]:
    """One example's pair kind and its (driving, target, reference) views from `views` [(id, kind), ...]: the driving
    and reference views are still ones, the target is the driving view (same view), another still view (cross view)
    or a moving camera; a kind the clip cannot give falls back to the next simpler one."""
    still = [name for name, kind in views if kind in ("driving", "static")]
    moving = [name for name, kind in views if kind == "moving"]
    kind = PAIR_KINDS[rng.choice(len(PAIR_KINDS), p=kind_probabilities)]
    if kind == "moving_camera" and not moving:
        kind = "cross_view"
    if kind == "cross_view" and len(still) < 2:
        kind = "same_view"
    driving = rng.choice(still)
    if kind == "same_view":
        target = driving
    elif kind == "cross_view":
        target = rng.choice([name for name in still if name != driving])
    else:
        target = rng.choice(moving)
    return kind, driving, target, rng.choice(still)


@dataclass(frozen=True)
class PairChoice:
    """Which clip, frames and views one example uses."""

    kind: str
    clip_index: int
    start: int
    driving_view: str
    target_view: str
    reference_view: str


class ViewPairDataset(torch.utils.data.Dataset):
    """Examples indexed by sample number (any int >= 0); epochs are fresh permutations of (clip, window) items.

    Args:
        clips: the ClipDataset of the training split.
        num_frames, height, width: example size (frames are resized, cameras keep their own image size).
        ray_height, ray_width: size of the Plücker ray maps (the transformer wants latent size x camera_unshuffle).
        ratios: {"same_view": a, "cross_view": b, "moving_camera": c}, mixed by these weights.
        augmentation: callable(frames (F,3,H,W), hand_boxes (F,2,4), seed=int) -> (frames, hand_boxes), e.g.
            dimo_engine.augmentation.DrivingAugmentation; applied to driving frames only.
        latent_cache: read target/reference latents from `latent_cache_path` files when they exist
            (then target pixels are not loaded at all); `cache_tag` must match the tag written there.
        person_masks: also give the target's person mask, "target_mask" (F, H, W), for a person-weighted loss.
    """

    def __init__(
        self,
        clips: ClipDataset,
        num_frames: int,
        height: int,
        width: int,
        ray_height: int,
        ray_width: int,
        ratios: dict[str, float],
        window_stride: int = 4,
        seed: int = 0,
        augmentation=None,
        latent_cache: bool = False,
        cache_tag: str = "",
        person_masks: bool = False,
    ):
        self.clips = clips
        self.num_frames, self.height, self.width = num_frames, height, width
        self.ray_height, self.ray_width = ray_height, ray_width
        weights = np.array([max(float(ratios.get(kind, 0.0)), 0.0) for kind in PAIR_KINDS])
        if weights.sum() <= 0:
            raise ValueError("pair ratios are all 0; give same_view, cross_view or moving_camera a positive weight.")
        self.kind_probabilities = weights / weights.sum()
        self.seed = seed
        self.augmentation = augmentation
        self.latent_cache = latent_cache
        self.cache_tag = cache_tag
        self.person_masks = person_masks
        self._warned_stale_cache = False
        self.items = [
            (clip_index, start)
            for clip_index, path in enumerate(clips.clip_paths)
            for start in training_window_starts(clips[clip_index].num_frames, num_frames, window_stride)
        ]

    def __len__(self) -> int:
        return len(self.items)

    # -- choosing ------------------------------------------------------------------------------------------

    def choose(self, sample: int) -> PairChoice:
        """The pair of sample number `sample`: item from this epoch's permutation, kind and views from its own RNG."""
        epoch, position = divmod(int(sample), len(self.items))
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.items))
        clip_index, start = self.items[order[position]]
        rng = np.random.default_rng([self.seed, int(sample), 1])
        clip = self.clips[clip_index]
        kind, driving, target, reference = choose_views(rng, [(v.name, v.kind) for v in clip.views.values()],
                                                        self.kind_probabilities)
        return PairChoice(kind, clip_index, start, str(driving), str(target), str(reference))

    # -- building ------------------------------------------------------------------------------------------

    def _pixels(self, view: ClipView, indices) -> torch.Tensor:
        return view_pixels(view, indices, self.height, self.width)

    def _rays(self, view: ClipView, indices) -> torch.Tensor:
        from dimo_engine.camera import camera_path_plucker_rays

        # the same ray maps as DiMoPipeline.camera_rays at inference (K rescaled from the clip's image size)
        rays = camera_path_plucker_rays(view.camera.take(indices), self.ray_height, self.ray_width)
        return rays.permute(1, 0, 2, 3)  # (6, F, h, w)

    def _cached_latents(self, view: ClipView, start: int) -> dict[str, torch.Tensor] | None:
        path = latent_cache_path(view, self.num_frames, self.height, self.width)
        if not self.latent_cache or not path.is_file():
            return None
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as cache:
            if cache.metadata().get("tag") != self.cache_tag or f"window_{start}_mean" not in cache.keys():
                if not self._warned_stale_cache:
                    self._warned_stale_cache = True
                    warnings.warn(f"{path}: the latent cache was made by another VAE (or for other windows); encoding "
                                  f"with the VAE at every step instead, several times slower. Run `dimo cache-latents` "
                                  f"with this config to refresh it.", stacklevel=2)
                return None
            return {
                "mean": cache.get_tensor(f"window_{start}_mean"), "std": cache.get_tensor(f"window_{start}_std"),
                "reference_mean": cache.get_tensor("reference_mean"), "reference_std": cache.get_tensor("reference_std"),
            }

    def __getitem__(self, sample: int) -> dict:
        choice = self.choose(sample)
        clip: Clip = self.clips[choice.clip_index]
        indices = window_frame_indices(choice.start, self.num_frames, clip.num_frames)
        driving, target, reference = (clip.views[n] for n in (choice.driving_view, choice.target_view, choice.reference_view))

        scale = torch.tensor([self.width / clip.width, self.height / clip.height] * 2)
        driving_frames = self._pixels(driving, indices)
        hand_boxes = torch.from_numpy(driving.annotations["hand_boxes"][indices]).float() * scale  # (F, 2, 4)
        if self.augmentation is not None:
            # The warp is drawn from this sample's own seed, so a resumed run sees the same augmentation.
            seed = int(np.random.default_rng([self.seed, int(sample), 2]).integers(2**31))
            driving_frames, hand_boxes = self.augmentation(driving_frames, hand_boxes, seed=seed)

        example = {
            "kind": torch.tensor(PAIR_KINDS.index(choice.kind)),
            "sample": torch.tensor(int(sample)),
            "clip_index": torch.tensor(choice.clip_index),
            "frame_indices": torch.from_numpy(indices),
            "driving_frames": driving_frames,  # (F, 3, H, W) in [0, 1]
            "hand_boxes": hand_boxes,  # (F, 2, 4) pixels of the example size
            "driving_world_to_camera": torch.from_numpy(driving.camera.world_to_camera[indices]).float(),
            "target_K": torch.from_numpy(target.camera.K[indices]).float(),  # for the clip's image size
            "target_world_to_camera": torch.from_numpy(target.camera.world_to_camera[indices]).float(),  # (F, 4, 4)
            "target_rays": self._rays(target, indices),  # (6, F, ray_h, ray_w)
            "reference_world_to_camera": torch.from_numpy(reference.camera.world_to_camera[REFERENCE_FRAME]).float(),
            "reference_rays": self._rays(reference, [REFERENCE_FRAME]),  # (6, 1, ray_h, ray_w)
            "global_orient": torch.from_numpy(clip.motion["global_orient"][indices]).float(),  # (F, 3)
            "body_pose": torch.from_numpy(clip.motion["body_pose"][indices]).float(),  # (F, 21, 3)
            "left_hand_pose": torch.from_numpy(clip.motion["left_hand_pose"][indices]).float(),  # (F, 15, 3)
            "right_hand_pose": torch.from_numpy(clip.motion["right_hand_pose"][indices]).float(),
        }
        target_cache = self._cached_latents(target, choice.start)
        reference_cache = self._cached_latents(reference, choice.start)
        if target_cache is not None and reference_cache is not None:
            example["target_latent_mean"], example["target_latent_std"] = target_cache["mean"], target_cache["std"]
            example["reference_latent_mean"] = reference_cache["reference_mean"]
            example["reference_latent_std"] = reference_cache["reference_std"]
        else:
            example["target_frames"] = self._pixels(target, indices)  # (F, 3, H, W) in [0, 1]
            example["reference_image"] = self._pixels(reference, [REFERENCE_FRAME])[0]  # (3, H, W)
        if self.person_masks:
            example["target_mask"] = view_masks(target, indices, self.height, self.width)  # (F, H, W) in [0, 1]
        return example


class SampleNumbers(torch.utils.data.Sampler):
    """Sample numbers of this process from `first_step` on: step s, micro-batch m, rank r, slot i ->
    ((s * accumulation + m) * world + r) * batch + i. Resuming at step s continues the same stream."""

    def __init__(self, batch_size: int, accumulation: int, world_size: int, rank: int, first_step: int, max_steps: int):
        self.batch_size, self.accumulation = batch_size, accumulation
        self.world_size, self.rank = world_size, rank
        self.first_step, self.max_steps = first_step, max_steps

    def __iter__(self):
        for step in range(self.first_step, self.max_steps):
            for micro in range(self.accumulation):
                base = ((step * self.accumulation + micro) * self.world_size + self.rank) * self.batch_size
                yield from range(base, base + self.batch_size)

    def __len__(self) -> int:
        return max(self.max_steps - self.first_step, 0) * self.accumulation * self.batch_size
