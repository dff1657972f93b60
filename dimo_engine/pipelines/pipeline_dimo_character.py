"""Where a reference image, motion tokens and target cameras become a character layer: the default model's pipeline.

Pixel space, no VAE (a VAE trained on this project's CPU budget turned the small person into a blob): the person is
generated in a square crop that follows the body in each target camera, as RGBA (alpha = the person), and pasted
back into the camera's full frame. Reads like diffusers' pipelines: `check_inputs` -> `encode_motion` (driving
frames -> anchored motion tokens) -> `prepare_latents` (one noise image shared by all frames, so the video does
not flicker) -> denoising loop (flow matching, the generator predicts the clean image) with `progress_bar` and
`callback_on_step_end` -> paste into full frames -> `DiMoPipelineOutput` with RGBA frames.

The same pipeline, with `motion_signal` "pose2d" or "noisy3d", is one of the benchmark's explicit-control
baselines: the generator, its inputs and the crop are the same, only the motion differs (`baseline_motion`).

The Wan-based `DiMoPipeline` (pipeline_dimo.py) stays for users with local Wan weights on a GPU.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline, FlowMatchEulerDiscreteScheduler, UNet2DModel
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback

from dimo_engine.character_layer import (
    body_proxy,
    crop_boxes,
    paste_crops,
    reference_colours,
    smooth_boxes,
    splat_motion,
    splat_view_locked,
    square_boxes_around,
    target_boxes,
    view_locked_pixels,
    view_locked_proxy,
)
from dimo_engine.camera import project_points
from dimo_engine.character_height import HEIGHT_RANGE_M, height_in_view, motion_at_height
from dimo_engine.errors import InputError
from dimo_engine.locomotion import travelling_anchors
from dimo_engine.models.anchored_motion_encoder import (
    AnchoredMotionEncoder,
    box_features,
    smooth_in_time,
)
from dimo_engine.models.keypoint_locator import KeypointLocator
from dimo_engine.models.motion_token_embedding import MotionTokenEmbedding
from dimo_engine.pipelines.pipeline_dimo import DenoisingLoopMixin, DiMoPipelineOutput, MotionTokens
from dimo_engine.person_crop import BACKGROUND, person_box_from_alpha, person_box_from_locator, square_box
from dimo_engine.silhouette_fit import FIT_STEPS, fit_pose_to_silhouettes, person_cells
from dimo_engine.video_io import resample_indices

HAND_CROP = 16
# Over a clip, the body's pose is smoothed in time (Gaussian sigma, frames), and the body's scale in the frame, which
# gives its depth, more (a still body's fitted scale wobbles with its pose). The pose's sigma is 1 since the driving
# pose is fitted to its silhouettes frame by frame: at 2 the fitted limbs lag (docs/default_model.md, "Less smoothing").
POSE_SMOOTHING_FRAMES = 1.0
SCALE_SMOOTHING_FRAMES = 6.0
DRIVING_CHUNK = 64  # driving frames turned into floats at a time
# What the generator is told of the motion. "dimo": anchored tokens read from the driving video by the motion
# encoders, projected by the target camera. The benchmark's baselines, given their joints instead of a video:
# "pose2d", the driving view's 2D joints drawn view-locked (where the driving camera saw them, whatever the target);
# "noisy3d", 3D joints with monocular-reconstruction noise projected by the target camera. Their tokens' features are
# learned per token (`MotionTokenEmbedding`).
MOTION_SIGNALS = ("dimo", "pose2d", "noisy3d")
BASELINE_INPUTS = {
    "pose2d": "the driving view's true 2D joints (the renderer's annotations)",
    "noisy3d": "the clip's true 3D joints, with simulated monocular-reconstruction noise",
}
WRISTS = (20, 21)
# Each body joint's mirror twin (SMPL-H: left and right swap), and the 52 2D joints' (body, then the left hand's 15
# and the right hand's 15).
MIRROR_JOINTS = [0, 2, 1, 3, 5, 4, 6, 8, 7, 9, 11, 10, 12, 14, 13, 15, 17, 16, 19, 18, 21, 20]
MIRROR_JOINTS_2D = MIRROR_JOINTS + list(range(37, 52)) + list(range(22, 37))
# A rotation R mirrored left to right is M R M, M = diag(-1, 1, 1): the signs that puts on the 6D entries (the first
# two columns, `rotation_6d`).
MIRROR_6D = (1.0, -1.0, -1.0, -1.0, 1.0, 1.0)
_X_NEGATED = (-1.0, 1.0, 1.0)
_MIRRORED = {
    "anchors": lambda a: a[..., MIRROR_JOINTS, :] * a.new_tensor(_X_NEGATED),  # (..., 22, 3) view frame
    "joints_2d": lambda j: j[..., MIRROR_JOINTS_2D, :] * j.new_tensor([-1.0, 1.0]) + j.new_tensor([1.0, 0.0]),  # crop units
    "root": lambda r: r * r.new_tensor(_X_NEGATED),  # (..., 3) view frame
    "box": lambda b: b * b.new_tensor(_X_NEGATED),  # (..., 3) `box_features`
    "body_pose_6d": lambda r: r[..., MIRROR_JOINTS, :] * r.new_tensor(MIRROR_6D),  # (..., 22, 6) SMPL-H rotations
}


def mirrored_geometry(geometry: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """What a body crop's geometry becomes in a mirror (left and right swapped, x negated), for each of its keys among
    "anchors", "joints_2d", "root", "box" and "body_pose_6d": what a mirrored crop shows, and what turns an answer read
    on a mirrored crop back."""
    return {key: _MIRRORED[key](value) for key, value in geometry.items()}


def motion_from_crops(body_encoder: AnchoredMotionEncoder, hand_encoder: AnchoredMotionEncoder, crops: torch.Tensor,
                      boxes: torch.Tensor, hand_crops: torch.Tensor) -> dict[str, torch.Tensor]:
    """Where driving crops become motion tokens, for training and inference alike.

    crops `(B, F, 3, S, S)` person-centred in [0, 1], boxes `(B, F, 3)` (`box_features` of each crop's box),
    hand_crops `(B, F, 2, 3, s, s)` -> the body encoder's outputs (view-frame "anchors", "root", training heads)
    plus "features" `(B, F, 24, D)`: 22 body tokens then the left and right hand tokens.
    """
    body = body_encoder(crops, boxes)
    hands = hand_encoder(hand_crops)
    body["body_features"] = body["features"]
    body["features"] = torch.cat([body["features"], hands["features"]], dim=2)
    body["hand_pose_6d"] = hands["pose_6d"]
    return body


def clip_anchors(body: dict[str, torch.Tensor], boxes: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """The body encoder's readings of one whole driving clip ("anchors", "root", "joints_2d", each `(1, T, ...)`) in
    its crop boxes `(T, 4)` (frame pixels) of a frame `width` x `height` pixels -> the body's anchors in the
    character frame `(1, T, 22, 3)`: the pose smoothed in time, the root's travel from the clip's 2D track
    (`root_from_track`, not from single crops), turned by the body's own facing at frame 0; a clip that travels has
    its focal length and heading read with its travel (`locomotion.travelling_anchors`). Differentiable: the
    silhouette stage trains the encoder through it."""
    side = (boxes[:, 2] - boxes[:, 0])[:, None, None]
    joints_px = body["joints_2d"][0] * side + boxes[:, None, :2]
    pose = smooth_in_time(body["anchors"][0], POSE_SMOOTHING_FRAMES)  # (T, 22, 3) root-relative, view frame
    return travelling_anchors(pose, joints_px, body["root"][0], width, height, SCALE_SMOOTHING_FRAMES)


def token_anchors(body_anchors: torch.Tensor) -> torch.Tensor:
    """Anchors of all 24 tokens `(..., 24, 3)` from the 22 body anchors: each hand token sits at its wrist."""
    return torch.cat([body_anchors, body_anchors[..., list(WRISTS), :]], dim=-2)


def rgba_to_model(rgba: torch.Tensor) -> torch.Tensor:
    """RGBA `(N, 4, H, W)` in [0, 1] -> the generator's space: RGB over the plain grey, and alpha, in [-1, 1]."""
    alpha = rgba[:, 3:4]
    rgb = rgba[:, :3] * alpha + BACKGROUND * (1 - alpha)
    return torch.cat([rgb, alpha], dim=1) * 2 - 1


def model_to_rgba(x: torch.Tensor) -> torch.Tensor:
    """Inverse of `rgba_to_model`: straight RGBA in [0, 1] (colour outside the person is irrelevant)."""
    x = ((x + 1) / 2).clamp(0, 1)
    return torch.cat([x[:, :3], x[:, 3:4]], dim=1)


class DiMoCharacterPipeline(DenoisingLoopMixin, DiffusionPipeline):
    """Re-enact motion with a reference character, seen from explicit target cameras, as an RGBA character layer.

    Components: `body_encoder` and `hand_encoder` (AnchoredMotionEncoder), `generator` (diffusers UNet2DModel in
    pixel space: noisy RGBA crop + reference crop + splatted motion maps -> clean RGBA crop), `scheduler`
    (FlowMatchEulerDiscreteScheduler), optional `keypoint_locator` (finds the person in driving videos without
    alpha), optional `token_embedding` (the baselines' learned token features). Config: `num_frames` (frames per
    call), `fps`, `height`/`width` (default camera size), `crop_size`, `splat_sigma`, `body_proxy` (the generator
    also reads where a typical body would cover the crop, `body_proxy`), `motion_signal` (`MOTION_SIGNALS`).
    """

    model_cpu_offload_seq = "body_encoder->hand_encoder->generator"
    _optional_components = ["keypoint_locator", "token_embedding"]
    _callback_tensor_inputs = ["latents"]
    reads_alpha = True  # the reference's alpha finds the character; `reenact.reenact` passes it through

    def __init__(self, body_encoder: AnchoredMotionEncoder, hand_encoder: AnchoredMotionEncoder, generator: UNet2DModel,
                 scheduler: FlowMatchEulerDiscreteScheduler, keypoint_locator: KeypointLocator | None = None,
                 token_embedding: MotionTokenEmbedding | None = None, num_frames: int = 17, fps: float = 12.0,
                 height: int = 128, width: int = 128, crop_size: int = 64, splat_sigma: float = 1.5,
                 body_proxy: bool = False, motion_signal: str = "dimo"):
        super().__init__()
        if motion_signal not in MOTION_SIGNALS:
            raise InputError(f"motion_signal {motion_signal!r} is not one of {', '.join(MOTION_SIGNALS)}.")
        if (motion_signal != "dimo") != (token_embedding is not None):
            raise InputError(f"A {motion_signal!r} model needs {'a' if motion_signal != 'dimo' else 'no'} "
                             f"token_embedding (the baselines' learned token features); the folder is incomplete.")
        self.register_modules(body_encoder=body_encoder, hand_encoder=hand_encoder, generator=generator,
                              scheduler=scheduler, keypoint_locator=keypoint_locator, token_embedding=token_embedding)
        self.register_to_config(num_frames=num_frames, fps=fps, height=height, width=width, crop_size=crop_size,
                                splat_sigma=splat_sigma, body_proxy=body_proxy, motion_signal=motion_signal)
        self._interrupt = False

    # ---- motion ---------------------------------------------------------------------------------------------

    def _driving_box(self, frames: np.ndarray, source: str):
        if frames.shape[-1] == 4:
            box = person_box_from_alpha(frames[..., 3])
        else:
            box = person_box_from_locator(self.keypoint_locator, frames)
        if box is None:
            if frames.shape[-1] == 4:
                raise InputError(f"{source}: its alpha channel is empty on every frame, so there is no person to "
                                 f"follow; give a video whose alpha is the person, or one without alpha.")
            box = None  # whole frame, letterboxed
        return square_box(box, frames.shape[2], frames.shape[1])

    @torch.no_grad()
    def encode_driving_clip(self, frames: np.ndarray, fps: float, source: str = "driving video",
                            silhouette_fit_steps: int = FIT_STEPS) -> MotionTokens:
        """A whole driving clip, uint8 `(T, H, W, C)` at `fps` (C = 4: alpha is the person) -> `MotionTokens` at the
        model's fps: body `(1, T', 22, D + 3)` and hands `(1, T', 2, D + 3)`, each token its learned feature then
        its anchor in the character frame (the body's own frame at the first frame). With alpha, the pose read from
        the crops is fitted to the clip's silhouettes (`silhouette_fit`) in `silhouette_fit_steps` steps (0: not)."""
        from dimo_engine.driving import MIN_DRIVING_FRAMES

        self.check_reads_video()
        indices = resample_indices(frames.shape[0], fps, float(self.config.fps))
        if indices.size < MIN_DRIVING_FRAMES:
            raise InputError(f"{source} gives {indices.size} frame(s) at the model's {self.config.fps:g} fps; motion "
                             f"needs at least {MIN_DRIVING_FRAMES} frames there, so give a clip of at least "
                             f"{MIN_DRIVING_FRAMES / float(self.config.fps):.2f} s.")
        frames = frames[indices]
        box = self._driving_box(frames, source)
        device = self._execution_device
        height, width = frames.shape[1:3]
        size = int(self.body_encoder.config.image_size)
        outputs = []
        # In chunks of frames: a long clip is never held as floats at its full size.
        for start in range(0, frames.shape[0], DRIVING_CHUNK):
            images = torch.from_numpy(np.ascontiguousarray(frames[start:start + DRIVING_CHUNK]))
            images = images.permute(0, 3, 1, 2).float() / 255.0  # (t, C, H, W)
            if images.shape[1] == 4:  # the person over the models' plain grey
                images = images[:, :3] * images[:, 3:] + BACKGROUND * (1 - images[:, 3:])
            boxes = torch.tensor(box, dtype=torch.float32).expand(images.shape[0], 4)
            crops = crop_boxes(images[:, :3], boxes, size).to(device)  # (t, 3, S, S)
            body = self.mirror_averaged(crops[None], box_features(boxes, width, height).to(device)[None])
            hand_boxes = self._hand_boxes(body["joints_2d"][0].cpu(), boxes, width, height)  # (t, 2, 4)
            hand_crops = torch.stack([crop_boxes(images[:, :3], hand_boxes[:, side], HAND_CROP) for side in (0, 1)], 1)
            body["hand_features"] = self.hand_encoder(hand_crops[None].to(device))["features"]
            if frames.shape[-1] == 4 and silhouette_fit_steps > 0:
                joints_px = body["joints_2d"][0] * (box[2] - box[0]) + body["joints_2d"].new_tensor(box[:2])
                person, person_boxes = person_cells(frames[start:start + DRIVING_CHUNK, ..., 3], box)
                body["anchors"] = fit_pose_to_silhouettes(body["anchors"][0], joints_px, person.to(device),
                                                          person_boxes.to(device), silhouette_fit_steps)[None]
            outputs.append(body)
        body = {key: torch.cat([o[key] for o in outputs], dim=1) for key in ("anchors", "root", "joints_2d", "features",
                                                                            "hand_features")}
        boxes = torch.tensor(box, dtype=torch.float32).expand(frames.shape[0], 4).to(device)
        all_anchors = token_anchors(clip_anchors(body, boxes, width, height))
        tokens = torch.cat([torch.cat([body["features"], body["hand_features"]], dim=2), all_anchors], dim=-1)
        return MotionTokens(tokens[:, :, :22], tokens[:, :, 22:])

    def motion_at_height(self, motion: MotionTokens, height_m: float) -> MotionTokens:
        """`motion` scaled so its body stands `height_m` metres tall (`character_height.motion_at_height`): a clip
        alone cannot say how tall the person in it is, and the target cameras expect the character's own size."""
        if self.config.motion_signal == "pose2d":
            raise InputError("character_height: the pose2d baseline's motion is the driving view's 2D joints, which "
                             "have no size in metres to scale; leave it unset for this model.")
        return motion_at_height(motion, height_m)

    def reference_height(self, reference_image: np.ndarray, reference_camera) -> float | None:
        """How tall, in metres, the character stands in its reference image (uint8 `(H, W, 4)`, alpha = the
        character) seen from `reference_camera` (a `CameraPath`; its first frame): the matte measured against the
        ground (`character_height.height_in_view`) in the pose the body encoder reads on the image. None when the
        image cannot say: no alpha, a baseline's motion (no body in metres), a matte cut by the frame's edge or not
        standing on ground the camera sees, or a height out of `HEIGHT_RANGE_M`."""
        from dimo_engine.driving import MIN_DRIVING_FRAMES

        image = np.asarray(reference_image)
        if image.ndim != 3 or image.shape[-1] != 4 or self.config.motion_signal != "dimo":
            return None
        still = np.repeat(image[None], MIN_DRIVING_FRAMES, axis=0)
        pose = self.encode_driving_clip(still, float(self.config.fps), source="reference image").body[0, 0, :, -3:]
        camera = reference_camera.resized(image.shape[1], image.shape[0])
        height = height_in_view(image[..., 3], camera.K[0], camera.world_to_camera[0], pose.cpu())
        low, high = HEIGHT_RANGE_M
        return height if height is not None and low <= height <= high else None

    def check_reads_video(self) -> None:
        """InputError for a baseline model: it does not read a driving video, so it cannot re-enact one."""
        signal = self.config.motion_signal
        if signal != "dimo":
            raise InputError(f"This model is the benchmark's {signal} baseline: it is given {BASELINE_INPUTS[signal]} "
                             f"instead of reading a driving video, so it cannot re-enact a video. Score it with "
                             f"`python -m training.compare_character`; to re-enact a video use a DiMo model (the "
                             f"default).")

    @torch.no_grad()
    def baseline_motion(self, body_points: torch.Tensor) -> MotionTokens:
        """A baseline's motion as tokens of the same layout as `encode_driving_clip`'s: body points `(F, 22, 3)` ->
        body `(1, F, 22, D + 3)` and hands `(1, F, 2, D + 3)`, each token its learned feature (`token_embedding`) then
        its point. "noisy3d": the noisy 3D joints in the character frame; "pose2d": the driving view's 2D joints as
        view-locked points (`character_layer.view_locked_points`). Hand tokens sit at the wrists."""
        if self.config.motion_signal == "dimo":
            raise InputError("A DiMo model reads its motion from the driving video; use encode_driving_clip.")
        points = token_anchors(body_points.to(self._execution_device, torch.float32))[None]  # (1, F, 24, 3)
        features = self.token_embedding(1, points.shape[1]).to(points)  # (1, F, 24, D)
        tokens = torch.cat([features, points], dim=-1)
        return MotionTokens(tokens[:, :, :22], tokens[:, :, 22:])

    def mirror_averaged(self, crops: torch.Tensor, boxes: torch.Tensor) -> dict[str, torch.Tensor]:
        """The body encoder on driving crops `(B, F, 3, S, S)` (box features `(B, F, 3)`) and on their mirror image,
        its geometry ("anchors", "joints_2d", "root") averaged with the mirrored answer turned back (left and right
        swapped, x negated): the two answers' errors partly cancel. The tokens' features are the crops' own, as the
        generator was trained on."""
        body = self.body_encoder(crops, boxes)
        mirror = self.body_encoder(crops.flip(-1), mirrored_geometry({"box": boxes})["box"])  # the box mirrored too
        turned_back = mirrored_geometry({key: mirror[key] for key in ("anchors", "joints_2d", "root")})
        return {**body, **{key: (body[key] + value) / 2 for key, value in turned_back.items()}}

    def _hand_boxes(self, joints_2d: torch.Tensor, boxes: torch.Tensor, width: int, height: int) -> torch.Tensor:
        """Hand crop boxes `(T, 2, 4)` from the body encoder's 2D joints (crop units), by the same recipe the clip
        renderer annotates the training hands with."""
        from blender_addon.core.annotations import SMPLH_LEFT_HAND, SMPLH_RIGHT_HAND, hand_boxes

        side = (boxes[:, 2] - boxes[:, 0])[:, None, None]
        pixels = (joints_2d * side + boxes[:, None, :2]).double().numpy()
        visible = np.ones(pixels.shape[:2], dtype=bool)
        return torch.from_numpy(hand_boxes(pixels, visible, [SMPLH_LEFT_HAND, SMPLH_RIGHT_HAND], height)).float()

    # ---- inputs ---------------------------------------------------------------------------------------------

    def check_inputs(self, reference_image, motion, target_cameras, num_inference_steps: int, reference_latents=None,
                     callback_on_step_end=None, callback_on_step_end_tensor_inputs=()) -> list[str]:
        """InputError for the first bad input; returns the tensor names the step callback gets."""
        if (reference_image is None) == (reference_latents is None):
            raise InputError("Give exactly one of reference_image (the character's picture) or reference_latents "
                             "(from pipe.encode_reference).")
        size = int(self.config.crop_size)
        if reference_latents is not None and tuple(reference_latents.shape) != (1, 4, size, size):
            raise InputError(f"reference_latents have shape {tuple(reference_latents.shape)}; give (1, 4, {size}, "
                             f"{size}) from pipe.encode_reference.")
        if not isinstance(motion, MotionTokens):
            raise InputError("No motion was given; pass MotionTokens from pipe.encode_driving_clip (or "
                             "`dimo encode-motion`).")
        feature_dim = int(self.body_encoder.config.feature_dim)
        if motion.body.shape[-1] != feature_dim + 3 or motion.body.shape[2] != 22:
            raise InputError(f"The motion tokens have shape {tuple(motion.body.shape)}, not (B, F, 22, {feature_dim + 3})"
                             f" of this model; encode the driving video again with this model.")
        if target_cameras is None:
            raise InputError("No target camera was given; pass a CameraPath with one camera per frame.")
        if target_cameras.num_frames != motion.num_frames:
            raise InputError(f"The target camera path has {target_cameras.num_frames} frames but the motion has "
                             f"{motion.num_frames}; give one camera per frame.")
        if num_inference_steps < 1:
            raise InputError(f"num_inference_steps must be at least 1, got {num_inference_steps}.")
        return self.callback_tensor_names(callback_on_step_end, callback_on_step_end_tensor_inputs)

    @torch.no_grad()
    def encode_reference(self, reference_image) -> torch.Tensor:
        """The reference as the pipeline encodes it, to pass as `reference_latents` (encode once, generate many
        windows and cameras): the character's crop `(1, 4, S, S)` in the generator's space, a square around its
        alpha (RGBA input), or around the person the keypoint locator finds (RGB: opaque, its set kept)."""
        if isinstance(reference_image, PIL.Image.Image):
            reference_image = np.asarray(reference_image.convert("RGBA" if "A" in reference_image.mode else "RGB"))
        image = np.asarray(reference_image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] not in (3, 4):
            raise InputError(f"The reference image has shape {image.shape} and type {image.dtype}; give an RGB or "
                             f"RGBA uint8 image (H, W, 3 or 4).")
        if image.shape[-1] == 3:
            image = np.concatenate([image, np.full(image.shape[:2] + (1,), 255, np.uint8)], axis=-1)
        if (image[..., 3] < 255).any():
            box = person_box_from_alpha(image[None, ..., 3])
        else:  # opaque: the person is found by the keypoint locator, the set stays in the crop as in training
            box = person_box_from_locator(self.keypoint_locator, image[None, ..., :3])
        box = square_box(box, image.shape[1], image.shape[0])
        pixels = torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float() / 255.0  # (1, 4, H, W)
        crop = crop_boxes(pixels, torch.tensor([box], dtype=torch.float32), int(self.config.crop_size))
        return rgba_to_model(crop).to(self._execution_device)

    @property
    def reads_appearance(self) -> bool:
        """Whether the generator takes the reference's colours splatted at the target (3 input channels more)."""
        proxy = 1 if self.config.body_proxy else 0
        return int(self.generator.config.in_channels) == 8 + int(self.body_encoder.config.feature_dim) + 2 + 3 + proxy

    def appearance_colours(self, reference: torch.Tensor) -> torch.Tensor | None:
        """Reference crops in the generator's space `(N, 4, S, S)` -> the colours `(N, P, 3)` at the body encoder's
        own 2D joints on them (`reference_colours`), or None for a generator that does not read them."""
        if not self.reads_appearance:
            return None
        rgb = (reference[:, :3] + 1) / 2
        joints = self.body_encoder(rgb[:, None])["joints_2d"][:, 0, :22]
        return reference_colours(rgb, token_anchors(joints))

    def motion_boxes(self, anchors: torch.Tensor, K: torch.Tensor, world_to_camera: torch.Tensor,
                     image_size: tuple[int, int]) -> torch.Tensor:
        """The person's crop boxes `(N, 4)` in target frames of `image_size` (H, W), from the motion's own token
        points `(N, K, 3)` (training and sampling alike): the target camera's projection of the anchors, or for the
        view-locked "pose2d" signal the driving 2D joints' extent (the target camera plays no part)."""
        if self.config.motion_signal == "pose2d":
            return square_boxes_around(view_locked_pixels(anchors, *image_size))
        return target_boxes(anchors, K, world_to_camera)

    def splat(self, anchors: torch.Tensor, features: torch.Tensor, K: torch.Tensor, world_to_camera: torch.Tensor,
              boxes: torch.Tensor, colours: torch.Tensor | None = None,
              image_size: tuple[int, int] | None = None) -> torch.Tensor:
        """What the generator reads of the motion in each target crop (training and sampling alike): token anchors
        `(N, K, 3)` and features `(N, K, D)`, cameras, boxes `(N, 4)` -> maps `(N, C, S, S)`: `splat_motion`, then the
        body proxy's coverage when the model reads it (no gradient flows back through the proxy). The "pose2d" signal draws its view-locked points in target
        frames of `image_size` (H, W) instead (`splat_view_locked`, `view_locked_proxy`: the same channels)."""
        size = int(self.config.crop_size)
        if self.config.motion_signal == "pose2d":
            if colours is not None:
                raise InputError("The pose2d baseline does not read the reference's colours (no appearance stage).")
            pixels = view_locked_pixels(anchors, *image_size)
            maps = splat_view_locked(pixels, features, boxes, size, float(self.config.splat_sigma))
            return torch.cat([maps, view_locked_proxy(pixels, boxes, size) * 2 - 1], 1) if self.config.body_proxy else maps
        maps = splat_motion(anchors, features, K, world_to_camera, boxes, size, float(self.config.splat_sigma), colours)
        if not self.config.body_proxy:
            return maps
        # The proxy is a drawing aid, not a path for the gradient: the anchors learn through the splat. Drawn without
        # autograd it costs its forward pass alone (docs/default_model.md, "Cost of the motion branch").
        proxy = body_proxy(anchors.detach(), K, world_to_camera, boxes, size)
        return torch.cat([maps, proxy * 2 - 1], dim=1)

    def motion_maps(self, motion: MotionTokens, target_cameras, colours: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Splatted motion `(F, C, S, S)` and crop boxes `(F, 4)` of the first clip of `motion` in `target_cameras`."""
        device = self._execution_device
        tokens = torch.cat([motion.body[0], motion.hands[0]], dim=1).to(device, torch.float32)  # (F, 24, D + 3)
        features, anchors = tokens[..., :-3], tokens[..., -3:]
        K = torch.from_numpy(target_cameras.K).float().to(device)
        world_to_camera = torch.from_numpy(target_cameras.world_to_camera).float().to(device)
        image_size = (int(target_cameras.height), int(target_cameras.width))
        boxes = smooth_boxes(self.motion_boxes(anchors, K, world_to_camera, image_size))
        if colours is not None:
            colours = colours.expand(anchors.shape[0], -1, -1)
        return self.splat(anchors, features, K, world_to_camera, boxes, colours, image_size), boxes

    def motion_joint_pixels(self, motion: MotionTokens, target_cameras) -> torch.Tensor:
        """Where the motion puts the 22 body joints in each target frame `(F, 22, 2)` (pixels) of the first clip of
        `motion`: its anchors projected by `target_cameras`, or for "pose2d" its view-locked joints (the target camera
        plays no part). What the layer is drawn from, scored against the target's true 2D joints."""
        points = motion.body[0, :, :, -3:].float().cpu()  # (F, 22, 3)
        if self.config.motion_signal == "pose2d":
            return view_locked_pixels(points, int(target_cameras.height), int(target_cameras.width))
        uv, _ = project_points(points, torch.from_numpy(target_cameras.K).float(),
                               torch.from_numpy(target_cameras.world_to_camera).float())
        return uv

    def prepare_latents(self, num_frames: int, generator=None, latents=None) -> torch.Tensor:
        """One noise image for every frame (F, 4, S, S): the same seed draws the same person, frame after frame."""
        if latents is not None:
            return latents.to(self._execution_device, torch.float32)
        size = int(self.config.crop_size)
        noise = self.draw_noise((1, 4, size, size), generator, self._execution_device)  # (1, 4, S, S)
        return noise.expand(num_frames, -1, -1, -1).clone()

    def predict_clean(self, noisy: torch.Tensor, timestep: torch.Tensor, reference: torch.Tensor,
                      maps: torch.Tensor) -> torch.Tensor:
        """One generator forward (training and sampling): noisy crops `(N, 4, S, S)`, timesteps `(N,)` in [0, 1000],
        reference crops `(N, 4, S, S)`, motion maps `(N, C, S, S)` -> the clean crop it predicts `(N, 4, S, S)`."""
        return self.generator(torch.cat([noisy, reference, maps], dim=1), timestep).sample

    # ---- generation -----------------------------------------------------------------------------------------

    @torch.no_grad()
    def __call__(
        self,
        reference_image=None,
        motion: MotionTokens | None = None,
        target_cameras=None,
        reference_camera=None,
        num_inference_steps: int = 12,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        callback_on_step_end: Callable | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ("latents",),
        drop_motion: bool = False,
        motion_guidance_scale: float | None = None,
        reference_latents: torch.Tensor | None = None,
    ):
        """Generate `(1, F, H, W, 4)` RGBA frames in [0, 1] of the reference character doing the motion, seen from
        `target_cameras` (frames at the camera path's own image size; alpha = the person).

        There is no height/width argument: the layer's size is the target camera path's image size
        (`target_cameras.width` x `.height`, the size its intrinsics are for); the generator itself always works
        on `crop_size` crops that follow the body.

        Args:
            reference_image: the character (uint8 RGBA whose alpha is the character, or RGB, or PIL); or give
                `reference_latents` instead.
            motion: `MotionTokens` from `encode_driving_clip` (one clip).
            target_cameras: `CameraPath` with one camera per frame, in the character frame.
            reference_camera: unused by this model (the reference crop is read whatever its view), kept for the
                shared call signature.
            callback_on_step_end: `f(pipe, step, timestep, callback_kwargs) -> dict`, or a diffusers
                `PipelineCallback` / `MultiPipelineCallbacks` (which name their own tensor inputs); set
                `pipe._interrupt = True` to stop after the current step.
            callback_on_step_end_tensor_inputs: the loop's tensors the callback gets, from `_callback_tensor_inputs`.
            drop_motion: generate with the motion maps zeroed (the probe that the generator reads the motion).
            motion_guidance_scale: accepted for the shared call signature (`reenact.reenact`); this model samples
                without guidance, so any value gives the same frames.
            reference_latents: the reference as the pipeline encodes it (`encode_reference`: its crop), instead of
                `reference_image`: encode once for many windows and cameras.
        """
        callback_tensor_names = self.check_inputs(reference_image, motion, target_cameras, num_inference_steps,
                                                  reference_latents, callback_on_step_end,
                                                  callback_on_step_end_tensor_inputs)
        self._interrupt = False
        num_frames = motion.num_frames

        # 1. The character's crop, and the motion seen by each target camera.
        if reference_latents is None:
            reference_latents = self.encode_reference(reference_image)
        reference = reference_latents.to(self._execution_device, torch.float32)  # (1, 4, S, S)
        maps, boxes = self.motion_maps(motion, target_cameras, self.appearance_colours(reference))
        reference = reference.expand(num_frames, -1, -1, -1)
        if drop_motion:
            maps = torch.zeros_like(maps)

        # 2. Noise, shared by all frames.
        latents = self.prepare_latents(num_frames, generator, latents)

        # 3. Denoising loop: the generator predicts the clean crop; the scheduler steps the flow velocity.
        self.scheduler.set_timesteps(num_inference_steps, device=latents.device)
        timesteps = self.scheduler.timesteps
        self._num_timesteps = len(timesteps)
        with self.progress_bar(total=num_inference_steps) as progress_bar:
            for i, t in enumerate(timesteps):
                if self.interrupt:
                    continue
                sigma = self.scheduler.sigmas[i].to(latents)
                clean = self.predict_clean(latents, t.expand(num_frames), reference, maps)
                velocity = (latents - clean) / sigma.clamp_min(1e-4)
                latents = self.scheduler.step(velocity, t, latents, return_dict=False)[0]
                if callback_on_step_end is not None:
                    step_locals = locals()
                    callback_kwargs = {name: step_locals[name] for name in callback_tensor_names}
                    latents = callback_on_step_end(self, i, t, callback_kwargs).pop("latents", latents)
                progress_bar.update()

        # 4. The crops back in the full frames: the character layer.
        if output_type == "latent":
            frames = latents[None]
        else:
            crops = model_to_rgba(latents)  # (F, 4, S, S)
            layer = paste_crops(crops, boxes, int(target_cameras.height), int(target_cameras.width))  # (F, 4, H, W)
            frames = layer.permute(0, 2, 3, 1)[None].clamp(0, 1).cpu()  # (1, F, H, W, 4)
            if output_type == "np":
                frames = frames.numpy()
            elif output_type == "pil":
                frames = [[PIL.Image.fromarray((f * 255 + 0.5).astype(np.uint8), "RGBA") for f in frames[0].numpy()]]
        self.maybe_free_model_hooks()
        if not return_dict:
            return (frames,)
        return DiMoPipelineOutput(frames=frames)


def create_character_pipeline(seed: int = 0, feature_dim: int = 16, crop_size: int = 64,
                              generator_channels=(32, 64, 96, 128), appearance: bool = False,
                              body_proxy: bool = False, motion_signal: str = "dimo",
                              encoder_geometry: str = "integral") -> DiMoCharacterPipeline:
    """A fresh, untrained default-model pipeline (deterministic from `seed`); `appearance`: its generator also reads
    the reference's colours splatted at the target (`reference_colours`); `body_proxy`: and the body proxy's
    coverage (`character_layer.body_proxy`); `motion_signal` (`MOTION_SIGNALS`): a baseline gets a learned token
    embedding, made after the generator, so its generator starts from the same weights as DiMo's; `encoder_geometry`: how
    the body encoder reads the body's geometry (`AnchoredMotionEncoder`'s `geometry`)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        body = AnchoredMotionEncoder(image_size=64, feature_dim=feature_dim, geometry=encoder_geometry)
        hands = AnchoredMotionEncoder(image_size=HAND_CROP, num_crops=2, num_tokens=1, feature_dim=feature_dim,
                                      channels=(32, 64), hidden_dim=128, box_features=0, aux_joints=15, anchors=False)
        generator = UNet2DModel(
            sample_size=crop_size, in_channels=4 + 4 + feature_dim + 2 + (3 if appearance else 0) + (1 if body_proxy else 0),
            out_channels=4,
            block_out_channels=tuple(generator_channels), layers_per_block=1, norm_num_groups=8,
            # attention only at the coarsest level (8 x 8): it carries the reference's look to where the body is
            down_block_types=("DownBlock2D", "DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
            up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D"),
            attention_head_dim=32,
        )
        embedding = MotionTokenEmbedding(feature_dim=feature_dim) if motion_signal != "dimo" else None
        pipe = DiMoCharacterPipeline(body, hands, generator, FlowMatchEulerDiscreteScheduler(shift=1.0),
                                     token_embedding=embedding, crop_size=crop_size, body_proxy=body_proxy,
                                     motion_signal=motion_signal)
    return pipe
