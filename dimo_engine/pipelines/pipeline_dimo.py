"""Where a reference image, motion and target cameras become video frames: the DiMo diffusers pipeline.

Reads like diffusers' `WanPipeline`: check_inputs -> encode_motion -> prepare_latents -> denoising loop
(classifier-free guidance on motion) -> decode -> `DiMoPipelineOutput`. The pieces training needs are public
methods: `encode_video_latents`, `encode_reference`, `camera_rays`, `motion_tokens_with_pose`, `predict_velocity`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import PIL.Image
import torch
from diffusers import AutoencoderKLWan, DiffusionPipeline, FlowMatchEulerDiscreteScheduler
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from diffusers.video_processor import VideoProcessor
from safetensors.torch import load_file, save_file

from blender_addon.core.atomic_io import atomic_write
from dimo_engine.errors import InputError
from dimo_engine.models.conditioning import check_frame_count
from dimo_engine.models.keypoint_locator import KeypointLocator
from dimo_engine.models.motion_encoder import MotionEncoder, encode_motion_tokens
from dimo_engine.models.transformer_dimo import DiMoTransformer3DModel


@dataclass
class MotionTokens:
    """Reusable motion code of a driving clip: body `(B, F, Kb, D)` and hands `(B, F, Kh, D)` tokens."""

    body: torch.Tensor
    hands: torch.Tensor

    @property
    def num_frames(self) -> int:
        return int(self.body.shape[1])

    def joined(self) -> torch.Tensor:
        """Body and hand tokens on one token axis `(B, F, Kb + Kh, D)`, what the transformer reads."""
        return torch.cat([self.body, self.hands.to(self.body.dtype)], dim=2)

    def to(self, *args, **kwargs) -> "MotionTokens":
        return MotionTokens(self.body.to(*args, **kwargs), self.hands.to(*args, **kwargs))

    def save(self, path) -> None:
        """Write a safetensors file (tmp name, then rename)."""
        with atomic_write(path) as partial:
            save_file({"body": self.body.detach().cpu().contiguous(), "hands": self.hands.detach().cpu().contiguous()},
                      str(partial), metadata={"format": "dimo-motion-tokens", "version": "1"})

    @classmethod
    def load(cls, path) -> "MotionTokens":
        try:
            tensors = load_file(str(path))
        except Exception as error:  # safetensors raises several types for a bad file
            raise InputError(f"{path}: not a motion tokens file ({error}); make one with `dimo encode-motion`.") from None
        if set(tensors) != {"body", "hands"} or tensors["body"].ndim != 4 or tensors["hands"].ndim != 4:
            raise InputError(f"{path}: expected 'body' and 'hands' tensors (B, F, K, D); make one with "
                             f"`dimo encode-motion`.")
        return cls(tensors["body"], tensors["hands"])


@dataclass
class DiMoPipelineOutput(BaseOutput):
    """frames: np `(B, F, H, W, 3)` in [0, 1], a torch tensor of that layout, or lists of PIL images."""

    frames: np.ndarray | torch.Tensor | list


class DenoisingLoopMixin:
    """What both DiMo pipelines share around their denoising loops: the interrupt flag a step callback sets, the
    step count, the step callback's tensors, the noise, and the reference image's default camera."""

    _interrupt = False

    @property
    def interrupt(self) -> bool:
        return self._interrupt

    @property
    def num_timesteps(self) -> int:
        return self._num_timesteps

    def callback_tensor_names(self, callback_on_step_end, tensor_inputs) -> list[str]:
        """The loop's tensors a step callback gets: those a diffusers `PipelineCallback` / `MultiPipelineCallbacks`
        names in its `tensor_inputs` (as diffusers' pipelines do), else `tensor_inputs`; each must be one of the
        pipeline's `_callback_tensor_inputs`."""
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            tensor_inputs = callback_on_step_end.tensor_inputs
        tensor_inputs = list(tensor_inputs or ())
        unknown = [name for name in tensor_inputs if name not in self._callback_tensor_inputs]
        if unknown:
            raise InputError(f"callback_on_step_end_tensor_inputs: {unknown} are not tensors this pipeline hands to "
                             f"its step callback; choose from {self._callback_tensor_inputs}.")
        return tensor_inputs

    @staticmethod
    def draw_noise(shape, generator, device) -> torch.Tensor:
        """Float32 Gaussian noise from diffusers' `randn_tensor` (a list of generators seeds each sample), drawn on
        the generator's device (the CPU without one) so a CPU seed gives the same noise whatever runs the model."""
        first = generator[0] if isinstance(generator, list) else generator
        draw_on = first.device if first is not None else torch.device("cpu")
        return randn_tensor(tuple(shape), generator=generator, device=draw_on, dtype=torch.float32).to(device)

    def default_reference_camera(self):
        """The reference image's camera when none is given: a still front view at eye level (azimuth 0,
        elevation 0, the character framed), as the training renders' still views."""
        from blender_addon.core.camera_rigs import static_view

        return static_view(0.0, 0.0, 1, float(self.config.fps), int(self.config.width), int(self.config.height), seed=0)


class DiMoPipeline(DenoisingLoopMixin, DiffusionPipeline):
    """Re-enact motion with a reference character, seen from explicit target cameras.

    Components: `vae` (AutoencoderKLWan), `transformer` (DiMoTransformer3DModel), `body_encoder` and
    `hand_encoder` (MotionEncoder), `scheduler` (FlowMatchEulerDiscreteScheduler), optional `keypoint_locator`.
    Config: `num_frames` (4k+1), `fps`, `height`, `width` of the videos the model makes.
    """

    model_cpu_offload_seq = "body_encoder->hand_encoder->vae->transformer->vae"
    _optional_components = ["keypoint_locator"]
    _callback_tensor_inputs = ["latents"]

    def __init__(
        self,
        vae: AutoencoderKLWan,
        transformer: DiMoTransformer3DModel,
        body_encoder: MotionEncoder,
        hand_encoder: MotionEncoder,
        scheduler: FlowMatchEulerDiscreteScheduler,
        keypoint_locator: KeypointLocator | None = None,
        num_frames: int = 17,
        fps: float = 12.0,
        height: int = 128,
        width: int = 128,
    ):
        super().__init__()
        self.register_modules(vae=vae, transformer=transformer, body_encoder=body_encoder,
                              hand_encoder=hand_encoder, scheduler=scheduler, keypoint_locator=keypoint_locator)
        self.register_to_config(num_frames=num_frames, fps=fps, height=height, width=width)
        self.vae_scale_factor_temporal = vae.config.scale_factor_temporal if vae is not None else 4
        self.vae_scale_factor_spatial = vae.config.scale_factor_spatial if vae is not None else 8
        self.video_processor = VideoProcessor(vae_scale_factor=self.vae_scale_factor_spatial)
        self._interrupt = False

    # ---- inputs ---------------------------------------------------------------------------------------------

    def check_frame_count(self, num_frames: int, what: str) -> None:
        """InputError unless `num_frames` is a count the VAE takes (4k+1) and within what the model knows."""
        check_frame_count(num_frames, self.vae_scale_factor_temporal, what)

    def check_inputs(self, reference_image, motion, driving_frames, target_cameras, reference_camera,
                     num_frames: int, motion_guidance_scale: float, num_inference_steps: int,
                     reference_latents=None, height: int | None = None, width: int | None = None,
                     callback_on_step_end=None, callback_on_step_end_tensor_inputs=()) -> list[str]:
        """InputError for the first bad input; returns the tensor names the step callback gets."""
        if (reference_image is None) == (reference_latents is None):
            raise InputError("Give exactly one of reference_image (the character's picture) or reference_latents "
                             "(from pipe.encode_reference).")
        height, width = self._frame_size(height, width)
        multiple = self.vae_scale_factor_spatial * self.transformer.config.patch_size[1]
        if height % multiple or width % multiple or not 0 < height <= 4096 or not 0 < width <= 4096:
            raise InputError(f"height x width is {height} x {width}; give multiples of {multiple} up to 4096.")
        if reference_latents is not None:
            latent_size = (height // self.vae_scale_factor_spatial, width // self.vae_scale_factor_spatial)
            channels = self.transformer.config.in_channels
            if (reference_latents.ndim != 5 or reference_latents.shape[1] != channels or reference_latents.shape[2] != 1
                    or tuple(reference_latents.shape[-2:]) != latent_size):
                raise InputError(f"reference_latents have shape {tuple(reference_latents.shape)}; give (B, {channels}, "
                                 f"1, {latent_size[0]}, {latent_size[1]}) from pipe.encode_reference at {height} x "
                                 f"{width}.")
        if (motion is None) == (driving_frames is None):
            raise InputError("Give exactly one of motion (from encode_motion) or driving_frames.")
        if target_cameras is None:
            raise InputError("No target camera was given; pass a CameraPath with one camera per frame.")
        self.check_frame_count(num_frames, "The video to generate")
        if target_cameras.num_frames != num_frames:
            raise InputError(
                f"The target camera path has {target_cameras.num_frames} frames but the video has {num_frames}; "
                f"give one camera per frame."
            )
        if reference_camera is not None and reference_camera.num_frames < 1:
            raise InputError("The reference camera path has no frame; give one camera for the reference image.")
        if isinstance(motion, MotionTokens) and motion.num_frames != num_frames:
            raise InputError(f"The motion has {motion.num_frames} frames but the video has {num_frames}; "
                             f"encode the driving video for {num_frames} frames.")
        if not 0 <= motion_guidance_scale <= 30:
            raise InputError(f"motion_guidance_scale must be from 0 to 30, got {motion_guidance_scale}.")
        if num_inference_steps < 1:
            raise InputError(f"num_inference_steps must be at least 1, got {num_inference_steps}.")
        return self.callback_tensor_names(callback_on_step_end, callback_on_step_end_tensor_inputs)

    def _frame_size(self, height: int | None, width: int | None) -> tuple[int, int]:
        """A call's frame size: the given one, else the pipeline's config."""
        return (int(self.config.height if height is None else height),
                int(self.config.width if width is None else width))

    # ---- motion ---------------------------------------------------------------------------------------------

    def _as_driving_batch(self, driving_frames) -> torch.Tensor:
        frames = torch.as_tensor(np.asarray(driving_frames) if not torch.is_tensor(driving_frames) else driving_frames)
        if frames.ndim == 4:
            frames = frames.unsqueeze(0)
        if frames.ndim != 5 or frames.shape[2] != 3:
            raise InputError(
                f"Driving frames have shape {tuple(frames.shape)}; give (F, 3, H, W) or (B, F, 3, H, W) floats in [0, 1]."
            )
        if not frames.is_floating_point():
            raise InputError("Driving frames must be floats in [0, 1], not integers; divide uint8 frames by 255.")
        return frames.to(self._execution_device, self.body_encoder.dtype)  # (B, F, 3, H, W)

    def _hand_boxes(self, frames: torch.Tensor, hand_boxes) -> torch.Tensor:
        if hand_boxes is None:
            locator = self.keypoint_locator
            if locator is None or not locator.config.trained:
                raise InputError(
                    "No hand boxes were given and this checkpoint has no trained keypoint locator; pass hand_boxes "
                    "(F, 2, 4) pixel boxes [x0, y0, x1, y1] for the left and right hand, or use a trained checkpoint."
                )
            return torch.stack([locator.hand_boxes(clip) for clip in frames])  # (B, F, 2, 4)
        boxes = torch.as_tensor(np.asarray(hand_boxes) if not torch.is_tensor(hand_boxes) else hand_boxes)
        boxes = boxes.to(frames.device, torch.float32)
        if boxes.ndim == 3:
            boxes = boxes.unsqueeze(0)
        if boxes.shape[1:] != (frames.shape[1], 2, 4):
            raise InputError(f"Hand boxes have shape {tuple(boxes.shape)} for {frames.shape[1]} driving frames; give "
                             f"({frames.shape[1]}, 2, 4) pixel boxes [x0, y0, x1, y1] (left, right hand).")
        return boxes.expand(frames.shape[0], -1, -1, -1)

    def motion_tokens_with_pose(self, driving_frames, hand_boxes=None) -> tuple[MotionTokens, torch.Tensor, torch.Tensor]:
        """Training's entry: driving frames `(B, F, 3, H, W)` in [0, 1] (already augmented) and hand boxes
        `(B, F, 2, 4)` -> (MotionTokens, body pose 6D `(B, F, 22, 6)`, hand pose 6D `(B, F, 2, 15, 6)`).
        Runs with gradients; pose targets come from `dimo_engine.models.motion_encoder.body_pose_targets` and
        `hand_pose_targets`."""
        tokens, body_pose, hand_pose = self._motion_tokens(driving_frames, hand_boxes, with_pose=True)
        return tokens, body_pose[:, :, 0], hand_pose

    def _motion_tokens(self, driving_frames, hand_boxes, with_pose: bool):
        frames = self._as_driving_batch(driving_frames)
        boxes = self._hand_boxes(frames, hand_boxes)
        body, hands, body_pose, hand_pose = encode_motion_tokens(self.body_encoder, self.hand_encoder, frames, boxes,
                                                                 with_pose)
        return MotionTokens(body, hands), body_pose, hand_pose

    @torch.no_grad()
    def encode_motion(self, driving_frames, hand_boxes=None) -> MotionTokens:
        """Driving frames `(F, 3, H, W)` or `(B, F, 3, H, W)` float [0, 1] (person-centred), optional hand boxes
        `(..., F, 2, 4)` pixel [x0, y0, x1, y1] -> reusable `MotionTokens` (B, F, K, D)."""
        tokens, _, _ = self._motion_tokens(driving_frames, hand_boxes, with_pose=False)
        return tokens

    # ---- latents and cameras --------------------------------------------------------------------------------

    def _latent_stats(self, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.vae.config.z_dim
        mean = torch.tensor(self.vae.config.latents_mean, device=device, dtype=dtype).view(1, z, 1, 1, 1)
        std = torch.tensor(self.vae.config.latents_std, device=device, dtype=dtype).view(1, z, 1, 1, 1)
        return mean, std

    def encode_video_latents(self, video: torch.Tensor, sample: bool = False, generator=None) -> torch.Tensor:
        """Video `(B, F, 3, H, W)` float [0, 1] (F = 4k+1) -> normalised latents `(B, C, (F-1)/4+1, H/8, W/8)`,
        i.e. (z - latents_mean) / latents_std, the space the transformer denoises in."""
        self.check_frame_count(video.shape[1], "The video to encode")
        pixels = (video.permute(0, 2, 1, 3, 4) * 2.0 - 1.0).to(self._execution_device, self.vae.dtype)  # (B,3,F,H,W)
        distribution = self.vae.encode(pixels).latent_dist
        latents = distribution.sample(generator) if sample else distribution.mode()
        mean, std = self._latent_stats(latents.device, latents.dtype)
        return (latents - mean) / std

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents -> video `(B, 3, F, H, W)` in [-1, 1]."""
        mean, std = self._latent_stats(latents.device, self.vae.dtype)
        return self.vae.decode(latents.to(self.vae.dtype) * std + mean, return_dict=False)[0]

    def _reference_pixels(self, reference_image, height: int, width: int) -> torch.Tensor:
        if isinstance(reference_image, np.ndarray) and reference_image.dtype == np.uint8:
            reference_image = PIL.Image.fromarray(reference_image[..., :3])
        if isinstance(reference_image, PIL.Image.Image):
            reference_image = reference_image.convert("RGB")
        try:
            return self.video_processor.preprocess(reference_image, height, width)
        except (ValueError, TypeError) as error:
            raise InputError(f"The reference image could not be read ({error}); give an RGB image.") from None

    def encode_reference(self, reference_image, height: int | None = None, width: int | None = None) -> torch.Tensor:
        """The reference as the pipeline encodes it, to pass as `reference_latents` (encode once, generate many
        windows and cameras): PIL image, uint8 array `(H, W, 3)` or tensor `(B, 3, H, W)` in [0, 1] -> normalised
        latent `(B, C, 1, h, w)`; resized to height x width (default: the pipeline's) first."""
        height, width = self._frame_size(height, width)
        pixels = self._reference_pixels(reference_image, height, width)  # (B, 3, H, W) in [-1, 1]
        video = (pixels.unsqueeze(1) + 1.0) / 2.0  # (B, 1, 3, H, W) in [0, 1]
        return self.encode_video_latents(video)

    def camera_rays(self, camera_path, frame_indices=None, height: int | None = None,
                    width: int | None = None) -> torch.Tensor:
        """Plücker rays of a camera path at the transformer's camera resolution for frames of height x width
        (default: the pipeline's) -> `(1, 6, F, h*r, w*r)`."""
        from dimo_engine.camera import camera_path_plucker_rays

        r = self.transformer.config.camera_unshuffle
        height, width = self._frame_size(height, width)
        rays = camera_path_plucker_rays(camera_path, height // self.vae_scale_factor_spatial * r,
                                        width // self.vae_scale_factor_spatial * r)  # (F, 6, h*r, w*r)
        if frame_indices is not None:
            rays = rays[frame_indices]
        return rays.permute(1, 0, 2, 3).unsqueeze(0).to(self._execution_device)

    def predict_velocity(self, latents, timestep, motion_tokens=None, camera_rays=None, reference_latents=None,
                         reference_rays=None) -> torch.Tensor:
        """One transformer forward (flow-matching velocity, target = noise - x0) with gradients, for training."""
        return self.transformer(latents, timestep, motion_tokens=motion_tokens, camera_rays=camera_rays,
                                reference_latents=reference_latents, reference_rays=reference_rays).sample

    def prepare_latents(self, batch_size: int, num_frames: int, dtype, device, generator=None,
                        latents: torch.Tensor | None = None, height: int | None = None,
                        width: int | None = None) -> torch.Tensor:
        if latents is not None:
            return latents.to(device=device, dtype=dtype)
        height, width = self._frame_size(height, width)
        shape = (batch_size, self.transformer.config.in_channels,
                 (num_frames - 1) // self.vae_scale_factor_temporal + 1,
                 height // self.vae_scale_factor_spatial, width // self.vae_scale_factor_spatial)  # (B, C, T, h, w)
        return self.draw_noise(shape, generator, device).to(dtype)

    # ---- generation -----------------------------------------------------------------------------------------

    @torch.no_grad()
    def __call__(
        self,
        reference_image=None,
        motion: MotionTokens | None = None,
        driving_frames=None,
        hand_boxes=None,
        target_cameras=None,
        reference_camera=None,
        num_inference_steps: int = 20,
        motion_guidance_scale: float = 2.0,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        callback_on_step_end: Callable | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ("latents",),
        control_maps: torch.Tensor | None = None,
        reference_latents: torch.Tensor | None = None,
        height: int | None = None,
        width: int | None = None,
    ):
        """Generate `(B, F, H, W, 3)` frames of the reference character doing the motion, seen from `target_cameras`.

        Args:
            reference_image: the character (PIL image, uint8 array or tensor in [0, 1]); or give
                `reference_latents` instead.
            motion / driving_frames (+ hand_boxes): reusable `MotionTokens`, or frames to encode now.
            target_cameras: `CameraPath` with one camera per generated frame (character frame).
            reference_camera: `CameraPath` whose first frame is the reference image's camera (None: the default
                front, eye-level view, `default_reference_camera`).
            motion_guidance_scale: classifier-free guidance on motion; 1 or less runs the conditional branch only.
            callback_on_step_end: `f(pipe, step, timestep, callback_kwargs) -> dict`, or a diffusers
                `PipelineCallback` / `MultiPipelineCallbacks` (which name their own tensor inputs); set
                `pipe._interrupt = True` to stop after the current step.
            callback_on_step_end_tensor_inputs: the loop's tensors the callback gets, from `_callback_tensor_inputs`.
            control_maps: only for the benchmark's baseline models (transformer `control_channels` > 0): their
                pixel-aligned control `(1 or B, Cc, F, h*r, w*r)`, kept in both guidance branches.
            reference_latents: the reference as the pipeline encodes it (`encode_reference`, at this call's
                height x width), instead of `reference_image`: encode once for many windows and cameras.
            height, width: the frames' size (multiples of 16); default the pipeline's config, the size it was
                trained at.
        """
        num_frames = motion.num_frames if motion is not None else int(getattr(driving_frames, "shape", (0,) * 4)[-4])
        callback_tensor_names = self.check_inputs(
            reference_image, motion, driving_frames, target_cameras, reference_camera, num_frames,
            motion_guidance_scale, num_inference_steps, reference_latents, height, width, callback_on_step_end,
            callback_on_step_end_tensor_inputs,
        )
        height, width = self._frame_size(height, width)
        self._interrupt = False
        device = self._execution_device
        dtype = self.transformer.dtype

        # 1. Motion tokens (body and hands on one token axis), and the unconditional branch for guidance.
        if motion is None:
            motion = self.encode_motion(driving_frames, hand_boxes)
        motion_tokens = motion.joined().to(device, dtype)  # (B, F, K, D)
        batch_size = motion_tokens.shape[0]
        do_guidance = motion_guidance_scale > 1.0
        if do_guidance:
            null = self.transformer.drop_motion(motion_tokens, torch.ones(batch_size, dtype=torch.bool, device=device))
            motion_tokens = torch.cat([motion_tokens, null])

        # 2. Reference latent and cameras.
        if reference_latents is None:
            reference_latents = self.encode_reference(reference_image, height, width)
        reference_latents = reference_latents.to(device, dtype).expand(batch_size, -1, -1, -1, -1)  # (B, C, 1, h, w)
        camera_rays = self.camera_rays(target_cameras, None, height, width).to(dtype)
        camera_rays = camera_rays.expand(batch_size, -1, -1, -1, -1)
        reference_camera = reference_camera if reference_camera is not None else self.default_reference_camera()
        reference_rays = self.camera_rays(reference_camera, [0], height, width).to(dtype)
        reference_rays = reference_rays.expand(batch_size, -1, -1, -1, -1)
        if control_maps is not None:
            control_maps = torch.as_tensor(control_maps).to(device, dtype).expand(batch_size, -1, -1, -1, -1)
        if do_guidance:
            reference_latents, camera_rays = torch.cat([reference_latents] * 2), torch.cat([camera_rays] * 2)
            reference_rays = torch.cat([reference_rays] * 2)
            control_maps = torch.cat([control_maps] * 2) if control_maps is not None else None

        # 3. Noise.
        latents = self.prepare_latents(batch_size, num_frames, torch.float32, device, generator, latents, height, width)

        # 4. Denoising loop.
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        self._num_timesteps = len(timesteps)
        self.scheduler.set_begin_index(0)
        with self.progress_bar(total=num_inference_steps) as progress_bar:
            for i, t in enumerate(timesteps):
                if self.interrupt:
                    continue
                model_input = torch.cat([latents] * 2) if do_guidance else latents
                velocity = self.transformer(
                    model_input.to(dtype), t.expand(model_input.shape[0]), motion_tokens=motion_tokens,
                    camera_rays=camera_rays, reference_latents=reference_latents, reference_rays=reference_rays,
                    return_dict=False, control_maps=control_maps,
                )[0].float()
                if do_guidance:
                    conditional, unconditional = velocity.chunk(2)
                    velocity = unconditional + motion_guidance_scale * (conditional - unconditional)
                latents = self.scheduler.step(velocity, t, latents, return_dict=False)[0]

                if callback_on_step_end is not None:
                    step_locals = locals()  # outside the comprehension, whose own locals() would be empty
                    callback_kwargs = {name: step_locals[name] for name in callback_tensor_names}
                    callback_outputs = callback_on_step_end(self, i, t, callback_kwargs)
                    latents = callback_outputs.pop("latents", latents)
                progress_bar.update()

        # 5. Decode.
        if output_type == "latent":
            frames = latents
        else:
            video = self.decode_latents(latents)  # (B, 3, F, H, W) in [-1, 1]
            frames = self.video_processor.postprocess_video(video.float(), output_type=output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (frames,)
        return DiMoPipelineOutput(frames=frames)

