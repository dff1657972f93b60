"""Cameras on the engine side: where a camera path becomes Plücker ray maps and where 3D points
become pixels, batched in torch.

The camera path file itself (reader, writer, validator, phrases) lives in `blender_addon.core` so
the add-on shares it; it is re-exported here with its errors turned into `InputError`. Camera
files loaded here are cameras to generate with, so they must also be able to show the character.
"""

from __future__ import annotations

import functools
import logging

import numpy as np
import torch

from blender_addon.core import camera_path as _camera_path
from blender_addon.core.camera_path import (  # noqa: F401  (re-exported)
    FORMAT_NAME,
    FORMAT_VERSION,
    CameraPath,
    CameraPathError,
    camera_path_to_dict,
    intrinsics_scale,
)
from dimo_engine.errors import InputError


def _as_input_error(function):
    """Wrap a numpy-side function so bad input surfaces as InputError (CLI exit 2, HTTP 4xx)."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except ValueError as error:
            if isinstance(error, InputError):
                raise
            raise InputError(str(error)) from error

    return wrapper


logger = logging.getLogger(__name__)


@_as_input_error
def load_camera_path(path, source: str | None = None) -> CameraPath:
    """Read and validate a camera path file to generate with; refused when no frame can show the
    character, and warned about (with the frame numbers) when some cannot."""
    camera_path = _camera_path.load_camera_path(path)
    check_character_in_view(camera_path, source or f"camera path {path}")
    return camera_path


save_camera_path = _as_input_error(_camera_path.save_camera_path)
validate_camera_path = _as_input_error(_camera_path.validate_camera_path)
camera_path_from_dict = _as_input_error(_camera_path.camera_path_from_dict)


@_as_input_error
def camera_path_from_phrase(phrase: str, *args, **kwargs) -> CameraPath:
    """A camera path from a text phrase ("orbit left 90 degrees while dolly in"); see docs/cameras.md."""
    from blender_addon.core.camera_phrases import camera_path_from_phrase as from_phrase

    return from_phrase(phrase, *args, **kwargs)


# Depth (metres) in front of the camera below which a point counts as behind it.
_NEAR = 0.05


def frames_without_character(camera_path: CameraPath) -> dict[int, str]:
    """{frame number: why} for the frames that cannot show the character: the box it stands in at
    frame 0 (camera_rigs.DEFAULT_SUBJECT_BOX, around the character frame's origin) lies behind the
    camera, projects wholly outside the image by more than the image's own size (so a character
    walking a few metres stays counted as seen), or covers less than one pixel (too far)."""
    from blender_addon.core.camera_rigs import DEFAULT_SUBJECT_BOX, box_corners

    uv, depth = camera_path.project(box_corners(DEFAULT_SUBJECT_BOX))  # (F, 8, 2), (F, 8)
    width, height = camera_path.width, camera_path.height
    unseen = {}
    with np.errstate(all="ignore"):
        for index, frame in enumerate(camera_path.frames.tolist()):
            seen = uv[index][depth[index] > _NEAR]  # (n, 2) pixels of the corners in front
            if seen.shape[0] == 0:
                unseen[int(frame)] = "the character is behind the camera"
                continue
            (u0, v0), (u1, v1) = seen.min(0), seen.max(0)
            if not np.all(np.isfinite(seen)) or max(u1 - u0, v1 - v0) < 1.0:
                unseen[int(frame)] = "the camera is too far away for the character to cover one pixel"
            elif u1 < -width or u0 > 2 * width or v1 < -height or v0 > 2 * height:
                unseen[int(frame)] = "the character is far outside the camera's view"
    return unseen


def frame_ranges(frames) -> str:
    """[0, 1, 2, 5, 7, 8] -> '0-2, 5, 7-8'."""
    frames = sorted(frames)
    runs = []
    first = last = frames[0]
    for frame in frames[1:]:
        if frame == last + 1:
            last = frame
            continue
        runs.append(f"{first}-{last}" if last > first else f"{first}")
        first = last = frame
    runs.append(f"{first}-{last}" if last > first else f"{first}")
    return ", ".join(runs)


def check_character_in_view(camera_path: CameraPath, source: str = "camera path") -> None:
    """InputError when no frame of the camera can show the character; a logged warning naming the
    frames when only some cannot (those frames would come out empty)."""
    unseen = frames_without_character(camera_path)
    if not unseen:
        return
    reasons = sorted(set(unseen.values()), key=list(unseen.values()).index)
    if len(unseen) == camera_path.num_frames:
        raise InputError(f"{source}: {reasons[0]} in every frame ({frame_ranges(unseen)}), so nothing of the person "
                         f"would be generated; aim the camera at the character (the character frame's origin, Z up, "
                         f"in metres) and export it again")
    logger.warning("%s: %s in frame(s) %s; those frames will show no one", source, "; or ".join(reasons),
                   frame_ranges(unseen))


def _as_float_tensor(value, dtype=None, device=None) -> torch.Tensor:
    is_tensor = isinstance(value, torch.Tensor)
    tensor = torch.as_tensor(value, device=device)
    if dtype is None:
        # Tensors keep their float dtype; numpy and lists become float32, what models take.
        dtype = tensor.dtype if is_tensor and tensor.is_floating_point() else torch.float32
    return tensor.to(dtype)


def _rescale_intrinsics(K: torch.Tensor, image_size, height: int, width: int) -> torch.Tensor:
    """K of an image of `image_size` (height, width) -> K of the same view sampled at height x width
    (the factors of the core's `intrinsics_scale`, as CameraPath.resized uses them)."""
    if image_size is None:
        return K
    return K * K.new_tensor(intrinsics_scale(image_size, (height, width)))


def plucker_rays(K, world_to_camera, height: int, width: int, image_size=None, dtype=None) -> torch.Tensor:
    """Per-pixel Plücker ray map (..., 6, height, width): world-frame unit direction, then moment.

    K (..., 3, 3) and world_to_camera (..., 4, 4) broadcast together (torch or numpy). K is in
    pixels of an image of `image_size` = (height, width) (the camera path's size, e.g.
    `(camera_path.height, camera_path.width)`); it is rescaled to the requested height x width,
    so a ray map at latent resolution covers the same field of view. Without `image_size`, K
    is taken to be for height x width already. The moment is origin x direction, so any
    point X on the ray satisfies X x direction = moment.
    """
    K = _as_float_tensor(K, dtype)
    world_to_camera = _as_float_tensor(world_to_camera, K.dtype, K.device)
    K = _rescale_intrinsics(K, image_size, height, width)
    rotation = world_to_camera[..., :3, :3]
    translation = world_to_camera[..., :3, 3]
    camera_to_world_rotation = rotation.transpose(-1, -2)
    origin = -(camera_to_world_rotation @ translation[..., None])[..., 0]  # (..., 3)

    rows = torch.arange(height, dtype=K.dtype, device=K.device) + 0.5
    columns = torch.arange(width, dtype=K.dtype, device=K.device) + 0.5
    v, u = torch.meshgrid(rows, columns, indexing="ij")
    pixels = torch.stack([u, v, torch.ones_like(u)], dim=-1).reshape(-1, 3)  # (H*W, 3) homogeneous pixel centres

    # Pixel -> camera direction -> world direction, as one matrix per camera.
    pixel_to_world = camera_to_world_rotation @ torch.linalg.inv(K)  # (..., 3, 3)
    direction = torch.einsum("...ij,pj->...pi", pixel_to_world, pixels)  # (..., H*W, 3)
    direction = torch.nn.functional.normalize(direction, dim=-1)
    moment = torch.cross(origin[..., None, :].expand_as(direction), direction, dim=-1)  # (..., H*W, 3)
    rays = torch.cat([direction, moment], dim=-1)  # (..., H*W, 6)
    return rays.transpose(-1, -2).reshape(*rays.shape[:-2], 6, height, width)


def camera_path_plucker_rays(camera_path: CameraPath, height: int | None = None, width: int | None = None,
                             dtype=torch.float32) -> torch.Tensor:
    """Plücker ray map (F, 6, height, width) of a camera path, by default at its own image size."""
    height = camera_path.height if height is None else height
    width = camera_path.width if width is None else width
    return plucker_rays(torch.from_numpy(camera_path.K), torch.from_numpy(camera_path.world_to_camera),
                        height, width, image_size=(camera_path.height, camera_path.width), dtype=dtype)


def project_points(points, K, world_to_camera) -> tuple[torch.Tensor, torch.Tensor]:
    """Project points (..., N, 3) in the character frame with K (..., 3, 3), world_to_camera (..., 4, 4).

    Returns uv (..., N, 2) pixel coordinates (top-left-corner convention) and depth (..., N) along the
    optical axis; points behind the camera get negative depth and uv is then meaningless. The same
    projection as `CameraPath.project` (with its default min_depth of 0), batched in torch.
    """
    points = _as_float_tensor(points)
    K = _as_float_tensor(K, points.dtype, points.device)
    world_to_camera = _as_float_tensor(world_to_camera, points.dtype, points.device)
    rotation = world_to_camera[..., None, :3, :3]
    translation = world_to_camera[..., None, :3, 3]
    camera_points = (rotation @ points[..., None])[..., 0] + translation  # (..., N, 3)
    image_points = (K[..., None, :, :] @ camera_points[..., None])[..., 0]  # (..., N, 3)
    depth = camera_points[..., 2]
    uv = image_points[..., :2] / image_points[..., 2:3]
    return uv, depth


__all__ = [
    "FORMAT_NAME", "FORMAT_VERSION", "CameraPath", "CameraPathError", "camera_path_from_dict", "check_character_in_view",
    "frames_without_character",
    "camera_path_from_phrase", "camera_path_plucker_rays", "camera_path_to_dict", "load_camera_path",
    "plucker_rays", "project_points", "save_camera_path", "validate_camera_path",
]
