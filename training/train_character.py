"""Training the default model (the character-layer pipeline) in resumable stages, on a CPU.

config (TOML -> `CharacterTrainConfig`) -> cached clips in memory -> models -> loop -> checkpoint -> export.

- stage "encoders": the body and hand encoders learn pose from driving crops alone (anchors in the view frame,
  the root's place, SMPL-H rotations, 2D joints), with perspective and appearance augmentation; batch 64.
- stage "joint": the generator learns the person from the motion, the encoders trained end to end through the
  generation loss; the geometric supervision (anchors, rotations) is annealed to exactly 0 by `aux_end_step`, after
  which the tokens are free. Pairs are same view, cross view and moving camera.

- stage "appearance": the joint stage's models, the generator also reading the reference's colours splatted at the
  target.
- stage "silhouette": a pipeline folder's body encoder, its geometry heads only (the features the generator reads stay
  as they are), trained through the whole inference path (mirror averaging, the root's track, the character frame) so
  the body proxy drawn from a clip's anchors covers the person in the clip's other views (`silhouette_step`).

The benchmark's baselines and ablations are settings of the same stages (docs/benchmark.md has the commands):
`motion_signal` "pose2d" / "noisy3d" (the joint stage only: the same generator, data, losses and schedule, given the
true 2D or noisy 3D joints instead of encoded motion); `perspective=0`; same-view pairs only (`same_view_ratio=1`,
`cross_view_ratio=0`, `moving_camera_ratio=0`); `aux_annealed=false`; `fresh_encoders=true` with `aux_weight=0`.

`python -m training.train_character --config character-default --stage encoders` (and `--stage joint`); a killed run
continues from its last checkpoint with the same command. The joint stage exports the diffusers folder that ships.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import signal
import time
import tomllib
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import ConfigDict, ValidationError
from pydantic.dataclasses import dataclass as pydantic_dataclass

from blender_addon.core.atomic_io import atomic_write
from dimo_engine.character_layer import crop_boxes
from dimo_engine.errors import InputError
from dimo_engine.models.anchored_motion_encoder import GEOMETRIES, box_features, turned_anchors, view_frame_targets
from dimo_engine.pipelines.pipeline_dimo_character import (
    MOTION_SIGNALS,
    clip_anchors,
    create_character_pipeline,
    mirrored_geometry,
    motion_from_crops,
    rgba_to_model,
    token_anchors,
)
from training.baselines import noisy_reconstruction
from training.character_data import CharacterExamples, build_character_cache, composite_over_background
from training.config import Count, NonNegative, Positive, Ratio, validation_problem
from training.losses import annealed_weight, silhouette_loss

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
STAGES = ("encoders", "joint", "appearance", "silhouette")
# the body encoder's geometry, which the silhouette stage trains by default: the integral decoder (2D joints and
# depths), the lift, the anchors' residual and the root (not the backbone or trunk, which the tokens' features come from)
SILHOUETTE_MODULES = ("decoder", "lift_head", "anchor_head", "root_head")
# what `silhouette_modules` may name besides: the shared trunk (the tokens' features move with it) and the backbone
SILHOUETTE_TRAINABLE = (*SILHOUETTE_MODULES, "trunk", "backbone")
ENCODER_MODULES = ("body_encoder", "hand_encoder")
TRAINED_MODULES = (*ENCODER_MODULES, "generator")


@pydantic_dataclass(config=ConfigDict(extra="forbid"))
class CharacterTrainConfig:
    """Every setting of `train_character`, typed and range-checked (pydantic); `load` reads a TOML config."""

    # a rendered clip dataset (dimo render-clips), or several: a TOML list, or folders joined by commas in --set
    dataset: str | list[str] = "data/clips"
    output_dir: str = "runs/character"
    seed: int = 0
    threads: Positive = 2
    # what the generator is told of the motion (`MOTION_SIGNALS`): "dimo", the motion encoders' anchored tokens; the
    # benchmark's baselines, joint stage only, with no encoders (so no geometric supervision: aux_weight is not read)
    # and a learned feature per token: "pose2d", the driving view's true 2D joints drawn view-locked; "noisy3d", the
    # true 3D joints with `training.baselines.noisy_reconstruction`'s noise, projected by the target camera
    motion_signal: Literal[MOTION_SIGNALS] = "dimo"
    # stage "encoders"
    # how the body encoder reads the body's geometry (`AnchoredMotionEncoder`): "global" regression, or "integral"
    # (2D joints from heatmaps, anchors lifted from them); a later stage must name the same as the one it continues
    encoder_geometry: Literal[GEOMETRIES] = "integral"
    encoder_steps: Positive = 2000
    encoder_batch: Positive = 64
    encoder_lr: NonNegative = 1e-3
    perspective: Ratio = 0.25  # kornia RandomPerspective distortion of driving crops (both stages); 0: no warp at all
    mirror_ratio: Ratio = 0.0  # driving crops read mirrored, their targets mirrored to match (`mirrored`)
    # stage "joint"
    joint_steps: Positive = 3000
    joint_batch: Positive = 16
    generator_lr: NonNegative = 5e-4
    joint_encoder_lr: NonNegative = 1e-4
    # the encoders' feature heads (the tokens' learned features, which only the generation loss shapes) at their own
    # rate, the geometry (backbone, anchors, root) at joint_encoder_lr (`joint_parameter_groups`); unset: the same
    joint_feature_lr: NonNegative | None = None
    aux_weight: NonNegative = 1.0
    aux_hold_steps: Count = 500
    aux_end_step: Count = 2000
    aux_annealed: bool = True  # false: the geometric supervision held at aux_weight for the whole joint stage
    # the joint stage's encoders start from random weights instead of the encoder stage's (none is needed): with
    # aux_weight=0, the "no geometric supervision" ablation
    fresh_encoders: bool = False
    alpha_loss_weight: NonNegative = 2.0
    rgb_loss_weight: NonNegative = 1.0  # the colours' share of the generation loss (the appearance stage raises it)
    # the share of a DiMo joint stage's examples whose tokens are placed at the true joints (the encoder's learned
    # features kept): a generator trained on the encoded anchors alone learns to hedge where they are off and draws
    # below a capsule body drawn from the same motion (`true_anchor_tokens`)
    true_anchor_ratio: Ratio = 0.0
    # the generator also reads the body proxy (capsules around the anchors' bones, `character_layer.body_proxy`); a
    # generator from `init_from` without it is widened with zero weights, so it starts as it was
    body_proxy: bool = False
    opaque_reference_ratio: Ratio = 0.3  # references given with their set and no alpha
    # stage "appearance": the joint stage's models, the generator widened to read the reference's colours splatted
    # at the target (its new input channels start at zero, so it starts as the joint stage ended)
    appearance_steps: Positive = 1200
    appearance_lr: NonNegative = 3e-4
    appearance_encoder_lr: NonNegative = 5e-5
    # stage "silhouette" (continues `init_from`): per step `silhouette_clips` clips, each read from its driving view or
    # a still one, scored in `silhouette_views` of its views on `silhouette_frames` frames at `silhouette_cells` cells
    # a side, with the view-frame anchor loss (metres) weighted `silhouette_anchor_weight` beside the silhouettes
    silhouette_steps: Positive = 1000
    silhouette_lr: NonNegative = 3e-5
    silhouette_clips: Positive = 2
    silhouette_views: Positive = 3
    silhouette_frames: Positive = 6
    silhouette_cells: Positive = 40
    silhouette_anchor_weight: NonNegative = 2.0
    # the body encoder's parts the stage trains (`SILHOUETTE_TRAINABLE`): a TOML list, or names joined by commas in --set
    silhouette_modules: str | list[str] = ",".join(SILHOUETTE_MODULES)
    # pair kinds of the joint stage, mixed by these weights (`pair_ratios`); same view only: 1, 0, 0
    same_view_ratio: Ratio = 0.3
    cross_view_ratio: Ratio = 0.5
    moving_camera_ratio: Ratio = 0.2
    # both
    checkpoint_every: Positive = 200
    log_every: Positive = 20
    # a pipeline folder (e.g. dimo_engine/weights/default) whose encoders and generator start the joint stage, instead
    # of the encoder stage's checkpoint, or whose encoders start the encoder stage: to continue training a shipped model
    init_from: str = ""
    # an encoder stage's checkpoint whose encoders replace init_from's (a generator continued on retrained encoders,
    # or an encoder stage continuing them)
    init_encoders_from: str = ""
    max_minutes: NonNegative = 0.0  # stop (with a checkpoint) after this long; 0: no limit
    pause_at_step: Count = 0  # stop (with a checkpoint) at this step, to continue later; 0: run to the end

    @classmethod
    def load(cls, name_or_path: str, overrides: dict[str, str] | None = None) -> "CharacterTrainConfig":
        """A TOML config (a file, or a name in training/configs/; its [sections] are for reading only) with
        `--set key=value` overrides on top; an unknown key, a wrong type or a value out of range is refused."""
        path = Path(name_or_path)
        if not path.is_file():
            path = CONFIG_DIR / f"{name_or_path}.toml"
        if not path.is_file():
            raise InputError(f"config {name_or_path!r} not found (neither a file nor {path}); name a TOML file.")
        values = {}
        for key, value in tomllib.loads(path.read_text()).items():
            values.update(value if isinstance(value, dict) else {key: value})
        values.update(overrides or {})
        known = sorted(f.name for f in dataclasses.fields(cls))
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise InputError(f"{path}: unknown setting(s) {unknown}; known: {known}")
        try:
            return cls(**values)
        except ValidationError as error:
            problem = error.errors()[0]
            key = ".".join(str(part) for part in problem["loc"])
            raise InputError(f"{path}: setting {key}={problem.get('input')!r}: {validation_problem(error)}.") from None


def listed(value: str | list[str]) -> list[str]:
    """A setting that names several things: a TOML list, or names joined by commas (`--set`), blanks dropped."""
    names = value if isinstance(value, list) else value.split(",")
    return [name.strip() for name in names if name.strip()]


def dataset_folders(config: CharacterTrainConfig) -> list[str]:
    """The clip dataset folders a run trains on (`dataset`: one folder, a list, or folders joined by commas)."""
    folders = listed(config.dataset)
    if not folders:
        raise InputError("dataset names no folder; give a clip dataset folder (dimo render-clips --out), e.g. data/clips.")
    return folders


def pair_ratios(config: CharacterTrainConfig) -> dict[str, float]:
    """The joint stage's mix of pair kinds (`training.pairs.PAIR_KINDS`); InputError when no kind has weight."""
    ratios = {"same_view": config.same_view_ratio, "cross_view": config.cross_view_ratio,
              "moving_camera": config.moving_camera_ratio}
    if sum(ratios.values()) <= 0:
        raise InputError("same_view_ratio, cross_view_ratio and moving_camera_ratio are all 0, so no pair can be drawn; "
                         "give at least one a weight (same view only: same_view_ratio=1).")
    return ratios


# ---- losses of the motion encoders ----------------------------------------------------------------------------


# Weights of the root's place (sideways, depth, height) in the geometric supervision. A crop cannot say how far away
# the body is (its size in the frame is focal / depth, and no video states the focal), so the depth term cannot fall:
# at full weight it was 65 % of the loss, and under gradient clipping it took the gradient the anchors needed. It
# keeps a small weight (the root head's distance only sets the track's focal, `root_from_track`).
ROOT_AXIS_WEIGHTS = (1.0, 0.01, 1.0)


def encoder_losses(out: dict, batch: dict, prefix: str = "driving_") -> dict[str, torch.Tensor]:
    """Geometric supervision of the motion tokens (all in comparable units: metres / 0.1, crop fractions / 0.03)."""
    root_error = (out["root"][:, 0] - batch[prefix + "root"]).pow(2).mean(0)  # (3,) per axis
    return {
        "anchors": F.mse_loss(out["anchors"][:, 0], batch[prefix + "anchors"]) / 0.01,
        "root": (root_error * root_error.new_tensor(ROOT_AXIS_WEIGHTS)).mean() / 0.1,
        "joints_2d": F.mse_loss(out["joints_2d"][:, 0], batch[prefix + "joints_2d"]) / 0.001,
        # MSE on the 6D rotation itself: the geodesic loss went NaN here at lr 1e-3 (its Gram-Schmidt and arccos)
        "pose": 10 * F.mse_loss(out["pose_6d"][:, 0, 0], batch[prefix + "body_pose_6d"]),
        "hands": F.mse_loss(out["hand_pose"], batch[prefix + "hand_pose_6d"]),
    }


class CropAugmentation:
    """Perspective, affine and colour augmentation of driving crops that carries the 2D joints along (kornia), and
    the set behind the person kept or replaced by the plain grey (user videos have sets; alpha inputs do not)."""

    def __init__(self, perspective: float):
        import kornia.augmentation as K

        # perspective 0 (the ablation) leaves the warp out, rather than drawing identity warps
        warps = [K.RandomPerspective(distortion_scale=perspective, p=0.7)] if perspective > 0 else []
        self.geometry = K.AugmentationSequential(
            *warps,
            K.RandomAffine(degrees=8.0, translate=(0.06, 0.06), scale=(0.9, 1.1), p=1.0),
            data_keys=["input", "keypoints"],
        )
        self.colour = K.ColorJiggle(0.25, 0.25, 0.25, 0.04, p=1.0)

    def __call__(self, crops: torch.Tensor, joints_2d: torch.Tensor, generator: torch.Generator):
        """crops `(N, 4, S, S)` RGBA, joints `(N, 52, 2)` crop units -> RGB crops `(N, 3, S, S)`, warped joints."""
        size = crops.shape[-1]
        keep_set = torch.rand(crops.shape[0], generator=generator) < 0.5
        rgb = torch.where(keep_set[:, None, None, None], crops[:, :3], composite_over_background(crops))
        warped, points = self.geometry(rgb, joints_2d * size)
        return self.colour(warped).clamp(0, 1), points / size


# ---- one step of each stage ----------------------------------------------------------------------------------


def encode(pipe, batch: dict, prefix: str, crops: torch.Tensor | None = None) -> dict:
    crops = batch[prefix + "crop"][:, :3] if crops is None else crops
    out = motion_from_crops(pipe.body_encoder, pipe.hand_encoder, crops[:, None], batch[prefix + "box"][:, None],
                            batch[prefix + "hand_crops"][:, None])
    out["hand_pose"] = out["hand_pose_6d"][:, 0]
    return out


def mirrored(batch: dict, flip: torch.Tensor, prefix: str = "driving_") -> dict:
    """`batch` with the examples where `flip` `(N,)` holds seen in a mirror: a body the renders could have held, its
    left and right swapped. The body crop is flipped, and its box, 2D joints, view-frame anchors and root, and SMPL-H
    rotations (the root's tilt in the heading-free character frame, the joints' own) are mirrored to match
    (`mirrored_geometry`). The hands keep their crops and targets: the hand encoder reads them apart from the body."""
    seen = mirrored_geometry({key: batch[prefix + key] for key in ("box", "joints_2d", "anchors", "root", "body_pose_6d")})
    seen["crop"] = batch[prefix + "crop"].flip(-1)
    return {**batch, **{prefix + key: torch.where(flip.view(-1, *[1] * (value.dim() - 1)), value, batch[prefix + key])
                        for key, value in seen.items()}}


def encoder_step(pipe, batch: dict, augmentation: CropAugmentation, generator: torch.Generator,
                 mirror_ratio: float = 0.0) -> dict:
    if mirror_ratio > 0:
        batch = mirrored(batch, torch.rand(batch["driving_crop"].shape[0], generator=generator) < mirror_ratio)
    crops, joints_2d = augmentation(batch["driving_crop"], batch["driving_joints_2d"], generator)
    batch = dict(batch, driving_joints_2d=joints_2d)
    losses = encoder_losses(encode(pipe, batch, "driving_", crops), batch)
    losses["total"] = sum(losses.values())
    return losses


def character_anchors(now: dict, first: dict, true_root: torch.Tensor) -> torch.Tensor:
    """Character-frame anchors `(N, 22, 3)` of single frames: the predicted pose, turned by the predicted facing of
    the clip's first frame, placed at the true root `(N, 3)`. The root's travel is given, not predicted, while the
    generator learns: a single crop cannot tell it (at inference it comes from the clip's 2D track, see
    `DiMoCharacterPipeline.encode_driving_clip`), and a misplaced crop would teach the generator to blur."""
    return turned_anchors(now["anchors"], first["anchors"][:, 0])[:, 0] + true_root[:, None]


def noisy_joints(batch: dict, generator: torch.Generator) -> torch.Tensor:
    """The noisy3d baseline's joints `(N, 22, 3)` (character frame): each example's true joints as a monocular
    reconstruction from its driving camera would give them (`noisy_reconstruction`, its documented sigmas), every
    example its own draw of the clip-level errors (bone lengths, global depth) and the frame's, seeded from
    `generator`."""
    seeds = torch.randint(2**31 - 1, (batch["driving_joints"].shape[0],), generator=generator).tolist()
    return torch.stack([torch.from_numpy(noisy_reconstruction(joints[None].numpy(), centre[None].numpy(), seed)[0])
                        for joints, centre, seed in zip(batch["driving_joints"], batch["driving_camera_centre"], seeds)]
                       ).float()


def true_anchor_tokens(anchors: torch.Tensor, joints: torch.Tensor, ratio: float,
                       generator: torch.Generator) -> torch.Tensor:
    """Token anchors `(N, 24, 3)` with a `ratio` share of the examples (drawn from `generator`) placed at their true
    joints `(N, 22, 3)` (character frame; the hand tokens at the true wrists). The generator learns from those to
    draw the person where the anchors put it; the encoders still learn through the tokens' features."""
    chosen = torch.rand(anchors.shape[0], generator=generator) < ratio
    return torch.where(chosen[:, None, None], token_anchors(joints[:, :22].to(anchors)), anchors)


def training_motion(pipe, batch: dict, signal: str, generator: torch.Generator,
                    augmentation: CropAugmentation, true_anchor_ratio: float = 0.0) -> dict:
    """What a joint-stage step tells the generator of each example's motion: token points "anchors" `(N, 24, 3)` and
    their "features" `(N, 24, D)`; for DiMo also the encoder's outputs ("encoded") and the augmented crops' 2D joints
    ("joints_2d") that the geometric supervision reads.

    "dimo": the encoders on the augmented driving crop (`character_anchors`); "noisy3d": the true joints with
    reconstruction noise (`noisy_joints`); "pose2d": the driving view's true 2D joints, view-locked. With
    `true_anchor_ratio`, that share of DiMo's examples is placed at the true joints (`true_anchor_tokens`). The baselines'
    features are their learned per-token embedding; hand tokens sit at the wrists (`token_anchors`)."""
    if signal == "dimo":
        crops, joints_2d = augmentation(batch["driving_crop"], batch["driving_joints_2d"], generator)
        now = encode(pipe, dict(batch, driving_joints_2d=joints_2d), "driving_", crops)
        first = encode(pipe, batch, "first_", composite_over_background(batch["first_crop"]))
        anchors = token_anchors(character_anchors(now, first, batch["driving_joints"][:, 0]))  # (N, 24, 3)
        if true_anchor_ratio > 0:
            anchors = true_anchor_tokens(anchors, batch["driving_joints"], true_anchor_ratio, generator)
        return {"anchors": anchors, "features": now["features"][:, 0], "encoded": now, "joints_2d": joints_2d}
    points = noisy_joints(batch, generator) if signal == "noisy3d" else batch["driving_view_locked_joints"]
    anchors = token_anchors(points)  # (N, 24, 3)
    return {"anchors": anchors, "features": pipe.token_embedding(anchors.shape[0], 1)[:, 0]}


def joint_step(pipe, batch: dict, aux: float, config: CharacterTrainConfig, generator: torch.Generator,
               augmentation: CropAugmentation) -> dict:
    motion = training_motion(pipe, batch, config.motion_signal, generator, augmentation, config.true_anchor_ratio)
    anchors, features = motion["anchors"], motion["features"]  # (N, 24, 3), (N, 24, D)
    K, world_to_camera = batch["target_K"], batch["target_world_to_camera"]
    size = int(pipe.config.crop_size)
    image_size = tuple(batch["target_frames"].shape[-2:])  # (H, W)
    with torch.no_grad():  # the crop follows the predicted motion, as at inference
        boxes = pipe.motion_boxes(anchors, K, world_to_camera, image_size)
    clean = rgba_to_model(crop_boxes(batch["target_frames"], boxes, size))  # (N, 4, S, S)
    reference = rgba_to_model(batch["reference_crop"])
    # A reference without alpha (a photo, a viewport grab) shows its set and is opaque: train for that too.
    opaque = torch.rand(reference.shape[0], generator=generator) < config.opaque_reference_ratio
    with_set = torch.cat([batch["reference_crop"][:, :3] * 2 - 1, torch.ones_like(reference[:, :1])], dim=1)
    reference = torch.where(opaque[:, None, None, None], with_set, reference)
    maps = pipe.splat(anchors, features, K, world_to_camera, boxes, pipe.appearance_colours(reference), image_size)

    sigmas = torch.sigmoid(torch.randn(clean.shape[0], generator=generator))  # logit-normal noise levels
    noise = torch.randn(clean.shape, generator=generator)
    noisy = (1 - sigmas[:, None, None, None]) * clean + sigmas[:, None, None, None] * noise
    predicted = pipe.predict_clean(noisy, sigmas * 1000, reference, maps)
    error = (predicted - clean).pow(2)
    losses = {"rgb": config.rgb_loss_weight * error[:, :3].mean(), "alpha": config.alpha_loss_weight * error[:, 3].mean()}
    if aux > 0:
        geometric = encoder_losses(motion["encoded"], dict(batch, driving_joints_2d=motion["joints_2d"]))
        losses["aux"] = aux * sum(geometric.values())
    losses["total"] = sum(losses.values())
    with torch.no_grad():
        losses["alpha_iou"] = _crop_iou(predicted[:, 3] > 0, clean[:, 3] > 0)
    return losses


def _crop_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    union = (a | b).sum()
    return (a & b).sum() / union.clamp_min(1)


# ---- the loop ------------------------------------------------------------------------------------------------


def _checkpoint_path(config: CharacterTrainConfig, stage: str) -> Path:
    return Path(config.output_dir) / f"{stage}_checkpoint.pt"


def _save_checkpoint(path: Path, pipe, optimizer, step: int, log: list) -> None:
    state = {"step": step, "optimizer": optimizer.state_dict(), "log": log,
             "models": module_weights(pipe)}
    with atomic_write(path) as partial:
        torch.save(state, partial)


def _load_models(pipe, state: dict) -> None:
    for name, weights in state["models"].items():
        module = getattr(pipe, name)
        trained_with = module.geometry_of(weights) if name == "body_encoder" else None
        if trained_with is not None and trained_with != module.config.geometry:
            raise InputError(f"The body encoder's weights were trained with encoder_geometry={trained_with}, but this "
                             f"run builds {module.config.geometry}; set encoder_geometry={trained_with} to continue them.")
        module.load_state_dict(weights)


def train_stage(config: CharacterTrainConfig, stage: str) -> dict:
    """Run (or continue) one stage; returns its last logged figures. Ctrl-C / SIGTERM saves a checkpoint first."""
    if stage not in STAGES:
        raise InputError(f"unknown stage {stage!r}; use one of {', '.join(STAGES)}")
    baseline = config.motion_signal != "dimo"
    if baseline and stage != "joint":
        raise InputError(f"motion_signal={config.motion_signal} is a benchmark baseline: it has no motion encoders to "
                         f"train and no appearance stage; run its 'joint' stage alone.")
    ratios = pair_ratios(config)
    torch.set_num_threads(config.threads)
    out_dir = Path(config.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if stage == "silhouette":  # refused before the clips are cached: no folder to continue, a misspelt part
        if not config.init_from:
            raise InputError("the silhouette stage continues a trained pipeline; set init_from to its folder (e.g. "
                             "dimo_engine/weights/default or runs/character_look/appearance_pipeline).")
        trained_parts = silhouette_modules(config)
    examples = CharacterExamples([build_character_cache(folder, "train") for folder in dataset_folders(config)], ratios)
    if stage == "silhouette":
        pipe = silhouette_pipeline(config.init_from)
    else:
        pipe = create_character_pipeline(seed=config.seed, appearance=stage == "appearance", body_proxy=config.body_proxy,
                                         motion_signal=config.motion_signal, encoder_geometry=config.encoder_geometry)
    checkpoint = _checkpoint_path(config, stage)
    if stage == "silhouette":
        parameters = [{"params": silhouette_parameters(pipe, trained_parts), "lr": config.silhouette_lr}]
        max_steps = config.silhouette_steps
    elif stage == "appearance":
        if not checkpoint.is_file():
            _load_models(pipe, {"models": appearance_start_weights(config, pipe)})
        parameters = [{"params": pipe.generator.parameters(), "lr": config.appearance_lr}]
        if config.appearance_encoder_lr > 0:
            parameters.append({"params": list(pipe.body_encoder.parameters()) + list(pipe.hand_encoder.parameters()),
                               "lr": config.appearance_encoder_lr})
        max_steps = config.appearance_steps
    elif stage == "joint":
        if not checkpoint.is_file():
            _load_models(pipe, {"models": joint_start_weights(config, pipe)})
        if baseline:  # the generator and the learned token features, nothing else
            parameters = [{"params": list(pipe.generator.parameters()) + list(pipe.token_embedding.parameters()),
                           "lr": config.generator_lr}]
        else:
            parameters = joint_parameter_groups(pipe, config)
        max_steps = config.joint_steps
        warn_if_never_annealed(config)
    else:
        if not checkpoint.is_file() and (config.init_from or config.init_encoders_from):
            models = {**(pipeline_weights(config.init_from) if config.init_from else {}),
                      **retrained_encoders(config.init_encoders_from)}
            _load_models(pipe, {"models": {name: models[name] for name in ENCODER_MODULES}})
        parameters = [{"params": list(pipe.body_encoder.parameters()) + list(pipe.hand_encoder.parameters()),
                       "lr": config.encoder_lr}]
        max_steps = config.encoder_steps
    optimizer = torch.optim.Adam(parameters)
    base_rates = [group["lr"] for group in optimizer.param_groups]  # before a checkpoint brings its scheduled ones
    step, log = 0, []
    if checkpoint.is_file():
        state = torch.load(checkpoint, weights_only=False)
        _load_models(pipe, state)
        optimizer.load_state_dict(state["optimizer"])
        step, log = int(state["step"]), state["log"]
        print(f"continuing {stage} from step {step}")
    augmentation = CropAugmentation(config.perspective)
    for module in (pipe.body_encoder, pipe.hand_encoder, pipe.generator):
        module.train()
    if stage == "joint" and (baseline or (encoders_frozen(config) and config.aux_weight == 0)) or (
            stage == "appearance" and config.appearance_encoder_lr == 0):
        for module in (pipe.body_encoder, pipe.hand_encoder):  # frozen (or unused): no backward pass through them
            module.requires_grad_(False)

    stop = {"now": False}
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    started = time.monotonic()
    window: dict[str, list[float]] = {}
    try:
        while step < max_steps and not stop["now"]:
            # Every step's batch and noise come from (seed, step) alone: a resumed run sees the same stream.
            rng = np.random.default_rng([config.seed, STAGES.index(stage), step])
            generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
            torch.manual_seed(int(rng.integers(2**62)))  # kornia draws from the global generator
            warmup = min(1.0, (step + 1) / 100)
            decay = 0.5 * (1 + math.cos(math.pi * step / max_steps))
            for group, rate in zip(optimizer.param_groups, base_rates):
                group["lr"] = rate * warmup * (0.1 + 0.9 * decay)
            if stage == "silhouette":
                losses = silhouette_step(pipe, examples, rng, config)
            elif stage == "encoders":
                losses = encoder_step(pipe, examples.batch(rng, config.encoder_batch, with_targets=False),
                                      augmentation, generator, config.mirror_ratio)
            else:
                aux = geometric_weight(step, config, stage)
                losses = joint_step(pipe, examples.batch(rng, config.joint_batch), aux, config, generator, augmentation)
            optimizer.zero_grad(set_to_none=True)
            if not torch.isfinite(losses["total"]):
                raise RuntimeError(f"{stage} step {step}: the loss is not finite ({losses}); lower the learning rate "
                                   f"and continue from the last checkpoint")
            losses["total"].backward()
            torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], 1.0)
            optimizer.step()
            step += 1
            for key, value in losses.items():
                window.setdefault(key, []).append(float(value.detach()))
            if step % config.log_every == 0 or step == max_steps:
                entry = {"step": step, "minutes": round((time.monotonic() - started) / 60, 2),
                         **{k: round(float(np.mean(v)), 5) for k, v in window.items()}}
                log.append(entry)
                window = {}
                print(json.dumps(entry), flush=True)
            if step % config.checkpoint_every == 0:
                _save_checkpoint(checkpoint, pipe, optimizer, step, log)
            if config.max_minutes and time.monotonic() - started > config.max_minutes * 60:
                break
            if config.pause_at_step and step >= config.pause_at_step:
                break
    finally:
        signal.signal(signal.SIGTERM, previous)
        _save_checkpoint(checkpoint, pipe, optimizer, step, log)
    if stage != "encoders" and step >= max_steps:
        export(pipe, out_dir / f"{'' if stage == 'joint' else stage + '_'}pipeline")
    return log[-1] if log else {}


def silhouette_pipeline(folder: str):
    """The pipeline folder the silhouette stage continues, as it is (its generator's inputs included)."""
    pipe = trained_pipeline(folder, "dimo")
    if pipe.body_encoder.config.geometry != "integral":
        raise InputError(f"init_from={folder}: the silhouette stage trains an integral body encoder's geometry heads; "
                         f"this folder's body encoder reads its geometry {pipe.body_encoder.config.geometry!r}.")
    return pipe


def silhouette_modules(config: CharacterTrainConfig) -> list[str]:
    """The body encoder's parts the silhouette stage trains (`silhouette_modules`); InputError for an unknown name."""
    names = listed(config.silhouette_modules)
    unknown = [name for name in names if name not in SILHOUETTE_TRAINABLE]
    if unknown or not names:
        raise InputError(f"silhouette_modules={config.silhouette_modules!r}: name one or more of "
                         f"{', '.join(SILHOUETTE_TRAINABLE)} (the body encoder's parts the silhouette stage trains).")
    return names


def silhouette_parameters(pipe, names: list[str]) -> list[torch.nn.Parameter]:
    """The body encoder's parts `names` (`silhouette_modules`), the only weights the silhouette stage changes."""
    for module in (pipe.body_encoder, pipe.hand_encoder, pipe.generator):
        module.requires_grad_(False)
    parameters = []
    for name in names:
        module = getattr(pipe.body_encoder, name)
        module.requires_grad_(True)
        parameters.extend(module.parameters())
    return parameters


def silhouette_step(pipe, examples: CharacterExamples, rng: np.random.Generator,
                    config: CharacterTrainConfig) -> dict[str, torch.Tensor]:
    """One step of the silhouette stage. Each clip is read as `dimo generate` reads a driving video (its driving view
    or a still one: the whole clip, mirror-averaged, the root from its 2D track, in the character frame), and the body
    proxy drawn from those anchors is scored against the true silhouette in some of the clip's views, moving cameras
    included (`losses.silhouette_loss`); the view-frame anchors keep their joint loss beside it."""
    totals: dict[str, torch.Tensor] = {}
    for _ in range(config.silhouette_clips):
        record = examples.clips[int(rng.integers(len(examples)))]
        views = record["views"]
        still = [i for i, view in enumerate(views) if view["kind"] in ("driving", "static")]
        driving = views[still[int(rng.integers(len(still)))]]
        crops = composite_over_background(driving["driving_crops"].float() / 255.0)  # (T, 3, 64, 64)
        count = crops.shape[0]
        boxes = driving["driving_box"].expand(count, 4)
        body = pipe.mirror_averaged(crops[None], box_features(boxes, record["width"], record["height"])[None])
        anchors = clip_anchors(body, boxes, record["width"], record["height"])[0]  # (T, 22, 3) character frame
        frames = torch.from_numpy(np.sort(rng.choice(count, min(config.silhouette_frames, count), replace=False)))
        scored = rng.choice(len(views), min(config.silhouette_views, len(views)), replace=False)
        silhouettes = [silhouette_loss(anchors[frames], views[v]["K"][frames], views[v]["world_to_camera"][frames],
                                       views[v]["frames"][frames, 3].float() / 255.0, config.silhouette_cells)
                       for v in scored]
        targets, _ = view_frame_targets(record["joints"][:, :22], driving["camera_to_world"])
        losses = {"silhouette": torch.stack([loss for loss, _ in silhouettes]).mean(),
                  "silhouette_iou": torch.stack([iou for _, iou in silhouettes]).mean(),
                  "anchors": (body["anchors"][0] - targets).norm(dim=-1).mean()}
        losses["total"] = losses["silhouette"] + config.silhouette_anchor_weight * losses["anchors"]
        for key, value in losses.items():
            totals[key] = totals.get(key, 0) + value / config.silhouette_clips
    return totals


def joint_parameter_groups(pipe, config: CharacterTrainConfig) -> list[dict]:
    """A DiMo joint stage's optimizer groups: the generator at `generator_lr`; the encoders' feature heads at
    `joint_feature_lr` (unset: `joint_encoder_lr`), everything else in the encoders at `joint_encoder_lr`. The
    features carry what only the generation loss teaches, while the geometry was taught by the encoder stage and,
    once the supervision is annealed away, drifts off the joints when trained on fast ("Longer joint training" in
    docs/default_model.md)."""
    encoders = (pipe.body_encoder, pipe.hand_encoder)
    features = [p for encoder in encoders for p in encoder.feature_head.parameters()]
    chosen = {id(p) for p in features}
    geometry = [p for encoder in encoders for p in encoder.parameters() if id(p) not in chosen]
    feature_lr = config.joint_encoder_lr if config.joint_feature_lr is None else config.joint_feature_lr
    return [{"params": list(pipe.generator.parameters()), "lr": config.generator_lr},
            {"params": geometry, "lr": config.joint_encoder_lr},
            {"params": features, "lr": feature_lr}]


def encoders_frozen(config: CharacterTrainConfig) -> bool:
    """Whether a joint stage leaves every encoder weight as it started (all its encoder learning rates 0)."""
    return config.joint_encoder_lr == 0 and not config.joint_feature_lr


def geometric_weight(step: int, config: CharacterTrainConfig, stage: str) -> float:
    """The geometric supervision's weight at a step: in the joint stage held, then annealed to exactly 0 at
    `aux_end_step` (`annealed_weight`), or held at `aux_weight` throughout (`aux_annealed=false`, the ablation).
    None in the appearance stage (it continues after the joint stage's end: the tokens stay free), nor for the
    baselines (no encoders to supervise)."""
    if stage == "appearance" or config.motion_signal != "dimo":
        return 0.0
    if not config.aux_annealed:
        return float(config.aux_weight)
    return annealed_weight(step, config.aux_weight, config.aux_hold_steps, config.aux_end_step)


def warn_if_never_annealed(config: CharacterTrainConfig) -> None:
    """Warn when a DiMo joint stage ends before its geometric supervision reaches 0 (`aux_end_step` past
    `joint_steps`): the method anneals it to exactly 0, and a shortened schedule easily forgets to scale it."""
    if (config.motion_signal == "dimo" and config.aux_annealed and config.aux_weight > 0
            and config.aux_end_step > config.joint_steps):
        warnings.warn(f"aux_end_step={config.aux_end_step} is past joint_steps={config.joint_steps}: the geometric "
                      f"supervision is never annealed to 0 in this run; set aux_end_step <= joint_steps (or "
                      f"aux_annealed=false, if that is the point)", stacklevel=2)


def joint_start_weights(config: CharacterTrainConfig, pipe) -> dict[str, dict]:
    """The weights a fresh joint stage starts from, by name (the rest keep `create_character_pipeline`'s random ones):
    `init_from`'s modules (`init_encoders_from`'s encoders over them), else the encoder stage's encoders, else none
    (`fresh_encoders`, or a baseline: it has no encoders to start). Contradicting settings are refused."""
    baseline = config.motion_signal != "dimo"
    if config.init_encoders_from and not config.init_from:
        raise InputError("init_encoders_from replaces init_from's encoders; give init_from (a pipeline folder) too.")
    if baseline and config.init_encoders_from:
        raise InputError(f"motion_signal={config.motion_signal} has no motion encoders; leave init_encoders_from empty.")
    if config.fresh_encoders and (baseline or config.init_from):
        raise InputError("fresh_encoders starts a DiMo joint stage's encoders from random weights; it does not go with "
                         f"{'a baseline motion_signal (no encoders)' if baseline else 'init_from (which loads them)'}.")
    if config.init_from:
        models = {**pipeline_weights(config.init_from, config.motion_signal), **retrained_encoders(config.init_encoders_from)}
        return {**models, "generator": widened_generator(models["generator"], pipe)}
    if baseline or config.fresh_encoders:
        return {}
    encoders = _checkpoint_path(config, "encoders")
    if not encoders.is_file():
        raise InputError(f"{encoders} is missing; run the 'encoders' stage first (or, for the no-geometric-supervision "
                         f"ablation, set fresh_encoders=true with aux_weight=0).")
    return {k: v for k, v in torch.load(encoders, weights_only=False)["models"].items() if k != "generator"}


def appearance_start_weights(config: CharacterTrainConfig, pipe) -> dict[str, dict]:
    """The weights a fresh appearance stage starts from: `init_from`'s modules (a pipeline folder, e.g. the shipped
    default), else this run's joint-stage checkpoint; the generator widened with zero weights for the colour
    channels, so the stage starts drawing exactly as its start did."""
    if config.init_from:
        return joint_start_weights(config, pipe)
    joint = _checkpoint_path(config, "joint")
    if not joint.is_file():
        raise InputError(f"{joint} is missing; run the 'joint' stage first, or set init_from to a pipeline folder.")
    models = torch.load(joint, weights_only=False)["models"]
    return {**models, "generator": widened_generator(models["generator"], pipe)}


def pipeline_weights(folder: str, motion_signal: str | None = None) -> dict[str, dict]:
    """The trained modules' weights of a pipeline folder by name (`module_weights`); with `motion_signal`, a folder
    trained with another signal is refused (its generator learned to read other maps)."""
    return module_weights(trained_pipeline(folder, motion_signal))


def trained_pipeline(folder: str, motion_signal: str | None = None):
    """A pipeline folder loaded on the CPU; with `motion_signal`, one trained with another signal is refused."""
    from dimo_engine.cli.model_args import check_model_folder
    from dimo_engine.pipelines import load_pipeline

    check_model_folder(Path(folder))
    pipe = load_pipeline(Path(folder), device="cpu")
    trained_with = pipe.config.get("motion_signal", "dimo")
    if motion_signal is not None and trained_with != motion_signal:
        raise InputError(f"init_from={folder} was trained with motion_signal={trained_with}, not {motion_signal}; start "
                         f"from a folder of the same signal, or from none.")
    return pipe


def retrained_encoders(path: str) -> dict[str, dict]:
    """The two encoders of an encoder stage's checkpoint at `path` (none when `path` is empty)."""
    if not path:
        return {}
    if not Path(path).is_file():
        raise InputError(f"init_encoders_from={path} is not a file; give an encoder stage's checkpoint "
                         f"(runs/.../encoders_checkpoint.pt).")
    models = torch.load(path, weights_only=False)["models"]
    return {name: models[name] for name in ENCODER_MODULES}


def module_weights(pipe) -> dict[str, dict]:
    """The state dicts of a pipeline's trained modules (TRAINED_MODULES, and a baseline's token_embedding), by name."""
    names = TRAINED_MODULES + (("token_embedding",) if pipe.token_embedding is not None else ())
    return {name: getattr(pipe, name).state_dict() for name in names}


def widened_generator(weights: dict, pipe) -> dict:
    """A generator's weights for a generator with as many or more input channels (appearance colours, the body
    proxy): the new channels' weights in the first convolution are zero, so the widened generator computes exactly
    what the old one did."""
    weights = dict(weights)
    old = weights["conv_in.weight"]
    new = torch.zeros_like(pipe.generator.conv_in.weight)
    new[:, : old.shape[1]] = old
    weights["conv_in.weight"] = new
    return weights


def export(pipe, folder: Path) -> Path:
    """The trained pipeline as a diffusers folder (safetensors), with the shipped person locator for RGB videos."""
    from dimo_engine.pipelines import save_pipeline

    locator_folder = Path(__file__).resolve().parents[1] / "dimo_engine" / "weights" / "default" / "keypoint_locator"
    if pipe.keypoint_locator is None and (locator_folder / "config.json").is_file():
        from dimo_engine.models.keypoint_locator import KeypointLocator

        pipe.register_modules(keypoint_locator=KeypointLocator.from_pretrained(locator_folder))
    for module in (pipe.body_encoder, pipe.hand_encoder, pipe.generator, pipe.token_embedding):
        if module is not None:
            module.eval()
    return save_pipeline(pipe, folder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dimo train-character", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="character-default", help="TOML name in training/configs or a path")
    parser.add_argument("--stage", choices=STAGES, required=True)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    args = parser.parse_args(argv)
    overrides = dict(item.split("=", 1) for item in args.set)
    config = CharacterTrainConfig.load(args.config, overrides)
    print(json.dumps(train_stage(config, args.stage)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
