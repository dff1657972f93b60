"""Where a job becomes frames: motion tokens + reference image + camera paths -> video frames per
camera, window by window, with progress, cancellation within one denoising step, and each
finished frame handed to a sink as soon as no later window can change it.

The CLI (`dimo generate`) and the service's job worker both run this.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Annotated, Callable

import numpy as np
import torch
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from blender_addon.core import api_schema as api
from blender_addon.core.api_schema import STAGE_DONE, STAGE_GENERATING, Progress
from blender_addon.core.camera_path import camera_fits_motion
from dimo_engine.camera import CameraPath
from dimo_engine.errors import InputError
from dimo_engine.frame_windows import DEFAULT_OVERLAP, blend_windows, overlapping_window_starts, pad_to_window, slice_motion
from dimo_engine.motion_file import motion_num_frames
from dimo_engine.person_crop import BACKGROUND

logger = logging.getLogger(__name__)


class GenerationCancelled(Exception):
    """Raised from the denoising callback when the job was cancelled."""


def _setting(name: str, optional: bool):
    """A settings field typed and ranged after the shared schema; strict, so `true`, `20.0` or "20" are refused."""
    bounds = api.SETTINGS[name]
    value = Annotated[bounds.kind, Field(strict=True, ge=bounds.low, le=bounds.high, allow_inf_nan=False)]
    return value | None if optional else value


class GenerationSettings(BaseModel):
    """Sampler settings; None leaves the pipeline's own default.

    `from_dict` reads what a person gave (a service job's `settings`, the CLI's flags): a bad value or an
    unknown field is an InputError naming the field and what it must be. Built with keywords in code, a bad
    value is pydantic's ValidationError.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    num_inference_steps: _setting("num_inference_steps", optional=True) = None
    motion_guidance_scale: _setting("motion_guidance_scale", optional=True) = None
    seed: _setting("seed", optional=False) = 0
    # How tall the character stands, in metres: the motion is scaled to it (`character_height.motion_at_height`).
    # None: as tall as the driving video shows the body, which a clip alone cannot measure (a typical body's height).
    character_height: _setting("character_height", optional=True) = None

    @classmethod
    def from_dict(cls, data: object, source: str = "settings") -> "GenerationSettings":
        if not isinstance(data, dict):
            raise InputError(f"{source} must be a JSON object like {api.SETTINGS_EXAMPLE}")
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            raise _input_error(error, source) from None


def _input_error(error: ValidationError, source: str) -> InputError:
    """The first problem pydantic found, as the one sentence a person gets."""
    known = sorted(GenerationSettings.model_fields)
    problems = error.errors()
    unknown = sorted(str(problem["loc"][0]) for problem in problems if problem["type"] == "extra_forbidden")
    if unknown:
        return InputError(f"{source} has unknown field(s) {unknown}; use only {known}")
    name = str(problems[0]["loc"][0])
    return InputError(f"{source}: {name} must be {api.SETTINGS[name].requirement}, got {problems[0]['input']!r}")


def conform_camera(camera: CameraPath, num_frames: int, model_fps: float, source: str = "camera path") -> CameraPath:
    """The camera on the motion's `num_frames` frames at the model fps.

    A one-frame camera is a static view. A camera at another fps is resampled in time when it
    spans the same duration (e.g. 48 frames at 24 fps for 24 frames at 12 fps).
    """
    if camera.num_frames == num_frames:
        return camera.take(np.arange(num_frames), model_fps)
    if camera.num_frames == 1:
        return camera.take(np.zeros(num_frames, dtype=int), model_fps)
    if camera_fits_motion(camera.num_frames, camera.fps, num_frames, model_fps):  # same duration at its own fps
        indices = np.minimum(np.round(np.arange(num_frames) * camera.fps / model_fps).astype(int), camera.num_frames - 1)
        return camera.take(indices, model_fps)
    raise InputError(
        f"{source} has {camera.num_frames} frames at {camera.fps:g} fps but the motion has {num_frames} frames at the "
        f"model's {model_fps:g} fps; export the camera for {num_frames} frames at {model_fps:g} fps "
        f"(or the same duration at its own fps), or give a one-frame camera for a static view"
    )


def reference_to_pil(reference: np.ndarray) -> Image.Image:
    """uint8 (H, W, C) -> RGB PIL image, a transparent background becoming the same grey as driving crops."""
    if reference.shape[-1] == 4:
        alpha = reference[..., 3:4].astype(np.float32) / 255.0
        rgb = reference[..., :3].astype(np.float32) * alpha + 255.0 * BACKGROUND * (1.0 - alpha)
        reference = (rgb + 0.5).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(reference[..., :3]))


FrameSink = Callable[[int, int, np.ndarray], None]  # (camera_index, first_frame, frames (n, H, W, 3) float [0, 1])


def reenact(
    pipe,
    reference: np.ndarray,
    motion,
    cameras: list[CameraPath],
    reference_camera: CameraPath | None = None,
    settings: GenerationSettings | None = None,
    on_frames: FrameSink | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    is_cancelled: Callable[[], bool] | None = None,
    overlap: int = DEFAULT_OVERLAP,
) -> list[np.ndarray]:
    """Generate every camera's video; returns per camera frames (T, H, W, 3) float in [0, 1].

    `cameras` must already have the motion's T frames (see `conform_camera`). The reference is encoded once
    (`pipe.encode_reference`) and reused by every window of every camera.
    """
    settings = settings or GenerationSettings()
    if settings.character_height is not None:
        at_height = getattr(pipe, "motion_at_height", None)
        if at_height is None:
            raise InputError(f"character_height={settings.character_height:g}: this model's motion tokens carry no body "
                             f"to scale; leave it unset, or use the character-layer model (the default).")
        motion = at_height(motion, settings.character_height)
    elif reference_camera is not None and hasattr(pipe, "reference_height"):
        # The character as tall as it stands in its reference image, measured through the camera that took it.
        height = pipe.reference_height(reference, reference_camera)
        if height is not None:
            logger.info("the reference image shows the character %.2f m tall; the motion is drawn at that height", height)
            motion = pipe.motion_at_height(motion, height)
    total = motion_num_frames(motion)
    window = int(pipe.config.num_frames)
    starts = overlapping_window_starts(total, window, overlap)
    steps_per_call = settings.num_inference_steps or _default_steps(pipe)
    progress = Progress(stage=STAGE_GENERATING, total_steps=steps_per_call * len(starts) * len(cameras),
                        frames_total=total * len(cameras))
    started = time.monotonic()

    def report(steps_done: int) -> None:
        progress.step = steps_done
        progress.fraction = min(1.0, steps_done / max(1, progress.total_steps))
        elapsed = time.monotonic() - started
        progress.eta_s = elapsed / progress.fraction * (1.0 - progress.fraction) if progress.fraction > 0 else None
        if on_progress is not None:
            on_progress(dataclasses.replace(progress))

    steps_done = 0
    report(0)
    # A pipeline that finds the character by its alpha gets the picture as it is; the others get RGB over grey.
    reference_image = reference if getattr(pipe, "reads_alpha", False) else reference_to_pil(reference)
    with torch.no_grad():
        reference_latents = pipe.encode_reference(reference_image)
    results = []
    for camera_index, camera in enumerate(cameras):
        chunks: list[np.ndarray] = []
        written = 0
        for window_index, start in enumerate(starts):
            if is_cancelled is not None and is_cancelled():
                raise GenerationCancelled()
            count = min(window, total - start)
            target = camera.take(pad_to_window(np.arange(start, start + count), window), camera.fps)
            call_steps_start = steps_done

            def on_step_end(pipeline, step_index, timestep, callback_kwargs):
                nonlocal steps_done
                steps_done = call_steps_start + step_index + 1
                report(steps_done)
                if is_cancelled is not None and is_cancelled():
                    pipeline._interrupt = True
                    raise GenerationCancelled()
                return callback_kwargs

            kwargs = {"num_inference_steps": settings.num_inference_steps,
                      "motion_guidance_scale": settings.motion_guidance_scale}
            output = pipe(
                reference_latents=reference_latents,
                motion=slice_motion(motion, start, start + count, window),
                target_cameras=target,
                reference_camera=reference_camera,
                generator=torch.Generator("cpu").manual_seed(settings.seed),
                output_type="np",
                callback_on_step_end=on_step_end,
                callback_on_step_end_tensor_inputs=[],  # the callback only counts steps and cancels
                **{k: v for k, v in kwargs.items() if v is not None},
            )
            if is_cancelled is not None and is_cancelled():
                raise GenerationCancelled()
            steps_done = call_steps_start + steps_per_call
            report(steps_done)
            chunks.append(np.asarray(output.frames)[0].astype(np.float32))  # (window, H, W, 3 or 4: RGBA layer)
            # Frames before the next window's start can no longer change: hand them out now.
            final = starts[window_index + 1] if window_index + 1 < len(starts) else total
            if on_frames is not None and final > written:
                blended = blend_windows(chunks, starts[: len(chunks)], total, overlap)
                on_frames(camera_index, written, blended[written:final])
            if final > written:
                progress.frames_done += final - written
                written = final
                report(steps_done)
        results.append(blend_windows(chunks, starts, total, overlap))
    progress.stage = STAGE_DONE
    report(steps_done)
    return results


def _default_steps(pipe) -> int:
    import inspect

    parameter = inspect.signature(pipe.__call__).parameters.get("num_inference_steps")
    default = parameter.default if parameter is not None else None
    return int(default) if isinstance(default, int) else 1
