"""Pixel-aligned control maps of the benchmark's baselines, the explicit-control models DiMo is compared with:

- `pose2d`: Gaussian heatmaps of the 22 SMPL-H body joints as seen in the *driving* view (pose-guided animation:
  the control is locked to the driving camera, whatever the target camera is);
- `joints3d-noisy`: the 3D body joints with the errors of a monocular reconstruction (a global depth error along
  the driving camera's line of sight, per-joint depth noise, wrong limb lengths, jitter), projected into the
  *target* camera and drawn as the same heatmaps (explicit 3D control: the map moves with the camera).

Maps are (C, F, h, w) at the camera rays' resolution (latent size x camera_unshuffle), the layout
`DiMoTransformer3DModel(control_channels=...)` takes; training (`training/train.py`, `control` setting) and the
benchmark (`training/benchmark.py`) build them with the same functions.
"""

from __future__ import annotations

import numpy as np
import torch

from dimo_engine.errors import InputError

NUM_BODY_JOINTS = 22  # SMPL-H body joints (pelvis .. wrists); the fingers are too small at these sizes
CONTROL_KINDS = ("pose2d", "joints3d-noisy")
HEATMAP_SIGMA = 0.75  # in map pixels (a map pixel is 2 image pixels for the tiny-cpu model)


def control_channels(kind: str) -> int:
    """Channels of a control kind's maps (what the model's `control_channels` must be)."""
    check_control_kind(kind)
    return NUM_BODY_JOINTS


def check_control_kind(kind: str) -> None:
    if kind not in CONTROL_KINDS:
        raise InputError(f"control = {kind!r} is not a baseline control; use one of {', '.join(CONTROL_KINDS)} (or none).")


def joint_heatmaps(joints2d: np.ndarray, visible: np.ndarray, image_size: tuple[int, int], map_size: tuple[int, int],
                   sigma: float = HEATMAP_SIGMA) -> torch.Tensor:
    """joints2d `(F, J, 2)` pixel (x, y) in an image of `image_size` (H, W), visible `(F, J)` -> heatmaps
    `(J, F, h, w)` in [0, 1] at `map_size` (h, w), peak 1 at each visible joint, 0 for hidden joints."""
    joints2d = torch.as_tensor(np.asarray(joints2d, dtype=np.float32))
    scale = torch.tensor([map_size[1] / image_size[1], map_size[0] / image_size[0]])
    points = joints2d * scale  # (F, J, 2) in map pixels, top-left-corner convention
    ys = torch.arange(map_size[0], dtype=torch.float32) + 0.5
    xs = torch.arange(map_size[1], dtype=torch.float32) + 0.5
    dx = xs.view(1, 1, 1, -1) - points[..., 0, None, None]  # (F, J, 1, w)
    dy = ys.view(1, 1, -1, 1) - points[..., 1, None, None]  # (F, J, h, 1)
    heatmaps = torch.exp(-(dx**2 + dy**2) / (2.0 * sigma**2))  # (F, J, h, w)
    keep = torch.as_tensor(np.asarray(visible, dtype=bool)) & torch.isfinite(points).all(-1)
    heatmaps = torch.where(keep[..., None, None], heatmaps.nan_to_num(0.0), torch.zeros(()))
    return heatmaps.permute(1, 0, 2, 3).contiguous()


def noisy_reconstruction(joints: np.ndarray, driving_centres: np.ndarray, seed: int, depth_sigma_m: float = 0.15,
                         joint_depth_sigma_m: float = 0.04, limb_sigma: float = 0.08, jitter_m: float = 0.015) -> np.ndarray:
    """Body joints `(F, >=22, 3)` (character frame) -> `(F, 22, 3)` as a monocular reconstruction from the driving
    camera (its centres `(F, 3)`, `CameraPath.centers`) would give them: each bone's length scaled by one factor per
    clip (~N(1, limb_sigma)), the whole body shifted along the driving camera's line of sight (~N(0, depth_sigma_m)),
    each joint moved along its own viewing ray (~N(0, joint_depth_sigma_m)) and jittered (~N(0, jitter_m)).
    Deterministic in `seed`. The Wan-path baseline (`joints3d_maps`) and the character pipeline's noisy3d signal
    (training/train_character.py, training/compare_character.py) both draw it."""
    from dimo_engine.body import SMPLH_PARENTS

    rng = np.random.default_rng(seed)
    joints = np.asarray(joints, dtype=np.float64)[:, :NUM_BODY_JOINTS]  # (F, 22, 3)
    parents = np.asarray(SMPLH_PARENTS)[:NUM_BODY_JOINTS]
    bone_scale = np.clip(rng.normal(1.0, limb_sigma, NUM_BODY_JOINTS), 0.6, 1.4)
    rebuilt = joints.copy()
    for joint in range(1, NUM_BODY_JOINTS):  # parents come before children in SMPL-H order
        parent = parents[joint]
        rebuilt[:, joint] = rebuilt[:, parent] + bone_scale[joint] * (joints[:, joint] - joints[:, parent])
    centres = np.asarray(driving_centres, dtype=np.float64)[:, None]  # (F, 1, 3)
    rays = rebuilt - centres
    rays /= np.linalg.norm(rays, axis=-1, keepdims=True)  # (F, 22, 3) unit viewing rays of the driving camera
    # Depth is what a single view gets wrong most: the body slides along the root's ray, each joint along its own.
    rebuilt = rebuilt + rng.normal(0.0, depth_sigma_m) * rays[:, :1]
    rebuilt = rebuilt + rng.normal(0.0, joint_depth_sigma_m, (*rays.shape[:2], 1)) * rays
    return rebuilt + rng.normal(0.0, jitter_m, rebuilt.shape)


def pose2d_maps(clip, driving_view: str, indices, map_size: tuple[int, int]) -> torch.Tensor:
    """Baseline (a): the driving view's 2D body joints as heatmaps `(22, F, h, w)`; the target camera plays no part."""
    view = clip.views[driving_view]
    indices = np.asarray(indices)
    joints2d = view.annotations["joints2d"][indices, :NUM_BODY_JOINTS]
    visible = view.annotations["joints_visible"][indices, :NUM_BODY_JOINTS]
    return joint_heatmaps(joints2d, visible, (clip.height, clip.width), map_size)


def joints3d_maps(clip, driving_view: str, target_camera, indices, map_size: tuple[int, int], seed: int) -> torch.Tensor:
    """Baseline (b): noisy reconstructed 3D joints projected into `target_camera` (a CameraPath over the same
    `indices` frames, or over the whole clip) as heatmaps `(22, F, h, w)`."""
    indices = np.asarray(indices)
    if target_camera.num_frames != len(indices):
        target_camera = target_camera.take(indices)
    driving_camera = clip.views[driving_view].camera.take(indices)
    joints = noisy_reconstruction(clip.motion["joints"][indices], driving_camera.centers, seed)
    uv, depth = target_camera.project(joints)  # (F, 22, 2), (F, 22)
    inside = (uv[..., 0] >= 0) & (uv[..., 0] < target_camera.width) & (uv[..., 1] >= 0) & (uv[..., 1] < target_camera.height)
    return joint_heatmaps(uv, inside & (depth > 1e-6), (target_camera.height, target_camera.width), map_size)


def control_maps(kind: str, clip, driving_view: str, target_camera, indices, map_size: tuple[int, int],
                 seed: int = 0) -> torch.Tensor:
    """The `kind` baseline's control maps `(22, F, h, w)` for one example."""
    check_control_kind(kind)
    if kind == "pose2d":
        return pose2d_maps(clip, driving_view, indices, map_size)
    return joints3d_maps(clip, driving_view, target_camera, indices, map_size, seed)


def batch_control_maps(kind: str, dataset, batch: dict, seed: int) -> torch.Tensor:
    """Control maps `(B, 22, F, ray_h, ray_w)` of a training batch of `training.pairs.ViewPairDataset`: each
    sample's pair is rebuilt from its sample number, and the reconstruction noise is fixed by (seed, sample)."""
    maps = []
    for position, sample in enumerate(batch["sample"].tolist()):
        choice = dataset.choose(int(sample))
        clip = dataset.clips[choice.clip_index]
        indices = batch["frame_indices"][position].cpu().numpy()
        target_camera = clip.views[choice.target_view].camera
        maps.append(control_maps(kind, clip, choice.driving_view, target_camera, indices,
                                 (dataset.ray_height, dataset.ray_width), seed=seed * 1_000_003 + int(sample)))
    return torch.stack(maps)


def with_control_branch(transformer, kind: str):
    """The same DiT with a zero-initialised control branch for `kind` maps: equal to `transformer` until trained
    (the baselines share DiMo's backbone and start from the same weights)."""
    from dimo_engine.models.transformer_dimo import DiMoTransformer3DModel

    channels = control_channels(kind)
    if transformer.config.get("control_channels", 0) == channels and transformer.config.get("control_kind") == kind:
        return transformer
    # diffusers drops keys listed in `_use_default_values` (set by from_config), so build from the plain entries.
    config = {key: value for key, value in transformer.config.items() if not key.startswith("_")}
    controlled = DiMoTransformer3DModel.from_config({**config, "control_channels": channels, "control_kind": kind})
    missing, unexpected = controlled.load_state_dict(transformer.state_dict(), strict=False)
    if unexpected or any(not key.startswith("control_embedding") for key in missing):
        raise InputError(f"the transformer does not take a {kind} control branch (missing {missing[:3]}, unexpected {unexpected[:3]}).")
    torch.nn.init.zeros_(controlled.control_embedding.weight)  # only the new branch: the rest keeps its training
    torch.nn.init.zeros_(controlled.control_embedding.bias)
    controlled = controlled if controlled.dtype == transformer.dtype else controlled.to(transformer.dtype)
    return controlled.train(transformer.training)
