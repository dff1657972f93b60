"""The camera path file (JSON, version 1): per-frame OpenCV intrinsics and world_to_camera in the
character frame, with its one reader, writer and validator.

numpy and the standard library only, so the Blender add-on and the engine share this file
(`dimo_engine.camera` re-exports it). The format is described in docs/formats.md.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np

from .atomic_io import write_json_atomic

FORMAT_NAME = "dimo-camera-path"
FORMAT_VERSION = 1
MIN_IMAGE_SIZE = 8
MAX_IMAGE_SIZE = 8192
ROTATION_TOLERANCE = 1e-4

# From OpenCV camera axes (x right, y down, z forward) to Blender's (x right, y up, -z forward);
# the flip is its own inverse.
OPENCV_TO_BLENDER_CAMERA = np.diag([1.0, -1.0, -1.0, 1.0])


class CameraPathError(ValueError):
    """A camera path that breaks the format, described in one sentence naming the frame and field."""


@dataclasses.dataclass(eq=False)  # arrays have no single truth value; compare fields with numpy
class CameraPath:
    """One camera over F frames: image size in pixels, fps, and per frame K and world_to_camera."""

    width: int
    height: int
    fps: float
    frames: np.ndarray  # (F,) frame numbers, strictly increasing
    K: np.ndarray  # (F, 3, 3) OpenCV intrinsics in pixels of the width x height image
    world_to_camera: np.ndarray  # (F, 4, 4) character frame (metres) -> OpenCV camera

    def __post_init__(self):
        self.frames = np.asarray(self.frames)
        self.K = np.asarray(self.K, dtype=np.float64)
        self.world_to_camera = np.asarray(self.world_to_camera, dtype=np.float64)

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def camera_to_world(self) -> np.ndarray:
        """(F, 4, 4) pose of the camera in the character frame (inverse of world_to_camera)."""
        rotation = self.world_to_camera[:, :3, :3]
        translation = self.world_to_camera[:, :3, 3]
        camera_to_world = np.tile(np.eye(4), (self.num_frames, 1, 1))
        camera_to_world[:, :3, :3] = np.swapaxes(rotation, 1, 2)
        camera_to_world[:, :3, 3] = -np.einsum("fji,fj->fi", rotation, translation)
        return camera_to_world

    @property
    def centers(self) -> np.ndarray:
        """(F, 3) camera positions in the character frame."""
        return self.camera_to_world[:, :3, 3]

    def project(self, points: np.ndarray, min_depth: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Project character-frame points (N, 3) or per frame (F, N, 3) to pixels.

        Returns uv (F, N, 2) in the top-left-corner pixel convention and depth (F, N) along
        the optical axis (positive in front of the camera). A point is divided by its depth, or by
        `min_depth` where |depth| <= min_depth: with the default 0 a point on the camera plane gets
        inf/nan pixels, with a small positive value far-off finite ones. Which points count as in
        front (the near plane) is the caller's rule on `depth`. `dimo_engine.camera.project_points`
        is the same projection batched in torch.
        """
        points = np.asarray(points, dtype=np.float64)
        if points.ndim == 2:
            points = np.broadcast_to(points, (self.num_frames, *points.shape))
        rotation = self.world_to_camera[:, :3, :3]
        translation = self.world_to_camera[:, None, :3, 3]
        camera_points = np.einsum("fij,fnj->fni", rotation, points) + translation  # (F, N, 3)
        depth = camera_points[..., 2]
        image_points = np.einsum("fij,fnj->fni", self.K, camera_points)  # (F, N, 3); z = depth, K's last row is 0 0 1
        divisor = np.where(np.abs(depth) > min_depth, depth, min_depth)[..., None]
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = image_points[..., :2] / divisor
        return uv, depth

    def resized(self, width: int, height: int) -> "CameraPath":
        """The same view sampled at width x height pixels (intrinsics scaled with the image)."""
        scale = intrinsics_scale((self.height, self.width), (height, width))
        return dataclasses.replace(self, width=width, height=height, K=self.K * scale)

    def take(self, indices, fps: float | None = None) -> "CameraPath":
        """The camera on its frames at `indices` (into the F frames). Without `fps` the frames keep their
        numbers and the path its fps (a subset); with `fps`, repeats are allowed and the frames are
        numbered 0..n-1 at `fps`: one camera frame per generated frame."""
        indices = np.asarray(indices, dtype=int)
        if fps is None:
            fps, frames = self.fps, self.frames[indices].copy()
        else:
            fps, frames = float(fps), np.arange(indices.size)
        return CameraPath(self.width, self.height, fps, frames,
                          self.K[indices].copy(), self.world_to_camera[indices].copy())


def intrinsics_scale(image_size, new_image_size) -> np.ndarray:
    """(3, 1) factors taking K of an image of `image_size` (height, width) to K of the same view sampled at
    `new_image_size`: K * factors. Rows 0 and 1 scale fx, skew, cx and fy, cy; the corner convention makes
    this exact. The one intrinsics rescale, shared with the engine's torch ray maps."""
    (height, width), (new_height, new_width) = image_size, new_image_size
    return np.array([[new_width / width], [new_height / height], [1.0]])


def _frame_label(camera_path: CameraPath, index: int) -> str:
    try:
        return f"frame {int(camera_path.frames[index])}"
    except (TypeError, ValueError, IndexError, OverflowError):
        return f"frame #{index}"


def validate_camera_path(camera_path: CameraPath, source: str = "camera path") -> CameraPath:
    """Check every rule of the format; raise CameraPathError naming `source`, the frame and the field."""
    fix = "export or generate the camera path again"
    for name in ("width", "height"):
        value = getattr(camera_path, name)
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise CameraPathError(f"{source}: {name} must be an integer number of pixels, got {value!r}; {fix}")
        if not MIN_IMAGE_SIZE <= value <= MAX_IMAGE_SIZE:
            raise CameraPathError(
                f"{source}: {name} is {value} pixels, outside {MIN_IMAGE_SIZE}..{MAX_IMAGE_SIZE}; "
                f"choose an image size in that range")
    fps = camera_path.fps
    if isinstance(fps, (bool, np.bool_)) or not isinstance(fps, (int, float, np.integer, np.floating)) \
            or not math.isfinite(fps) or fps <= 0:
        raise CameraPathError(f"{source}: fps must be a positive number, got {fps!r}; {fix}")

    frames = camera_path.frames
    if frames.ndim != 1 or frames.shape[0] < 1:
        raise CameraPathError(f"{source}: needs at least one frame, got frames of shape {frames.shape}; {fix}")
    count = frames.shape[0]
    if camera_path.K.shape != (count, 3, 3):
        raise CameraPathError(f"{source}: K has shape {camera_path.K.shape}, expected ({count}, 3, 3); {fix}")
    if camera_path.world_to_camera.shape != (count, 4, 4):
        raise CameraPathError(f"{source}: world_to_camera has shape {camera_path.world_to_camera.shape}, "
                              f"expected ({count}, 4, 4); {fix}")
    if frames.dtype.kind not in "iu":
        if frames.dtype.kind != "f" or not np.all(np.isfinite(frames)) or np.any(frames != np.round(frames)):
            bad = next((i for i, f in enumerate(frames.tolist())
                        if not (isinstance(f, (int, float)) and math.isfinite(f) and f == round(f))), 0)
            raise CameraPathError(
                f"{source}: frame #{bad} has a frame number {frames[bad]!r} that is not an integer; {fix}")
        camera_path.frames = frames = frames.astype(np.int64)
    steps = np.diff(frames)
    if np.any(steps <= 0):
        bad = int(np.argmax(steps <= 0)) + 1
        raise CameraPathError(f"{source}: frame numbers must increase strictly, but frame {int(frames[bad])} "
                              f"follows frame {int(frames[bad - 1])}; {fix}")

    for index in range(count):
        label = _frame_label(camera_path, index)
        K = camera_path.K[index]
        world_to_camera = camera_path.world_to_camera[index]
        for field, matrix in (("K", K), ("world_to_camera", world_to_camera)):
            if not np.all(np.isfinite(matrix)):
                raise CameraPathError(f"{source}: {label} has a non-finite number (NaN or infinity) in {field}; {fix}")
        if K[0, 0] <= 0 or K[1, 1] <= 0:
            raise CameraPathError(f"{source}: {label} has focal lengths fx={K[0, 0]:g}, fy={K[1, 1]:g} in K; "
                                  f"both must be positive; {fix}")
        if np.any(K[2] != (0.0, 0.0, 1.0)):
            raise CameraPathError(f"{source}: {label} has K last row {K[2].tolist()}, expected [0, 0, 1]; {fix}")
        if np.any(world_to_camera[3] != (0.0, 0.0, 0.0, 1.0)):
            raise CameraPathError(f"{source}: {label} has world_to_camera bottom row {world_to_camera[3].tolist()}, "
                                  f"expected [0, 0, 0, 1]; {fix}")
        rotation = world_to_camera[:3, :3]
        orthonormal_error = float(np.abs(rotation @ rotation.T - np.eye(3)).max())
        if orthonormal_error > ROTATION_TOLERANCE:
            raise CameraPathError(f"{source}: {label} has a non-rigid rotation in world_to_camera (R R^T differs "
                                  f"from identity by {orthonormal_error:.3g}); {fix} without scale or shear")
        determinant = float(np.linalg.det(rotation))
        if abs(determinant - 1.0) > ROTATION_TOLERANCE:
            raise CameraPathError(f"{source}: {label} has a mirrored rotation in world_to_camera "
                                  f"(det={determinant:.4g}, expected +1); {fix} without negative scale")
    return camera_path


def camera_path_to_dict(camera_path: CameraPath) -> dict:
    """The JSON-ready dict of the format (no validation; `save_camera_path` validates)."""
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "width": int(camera_path.width),
        "height": int(camera_path.height),
        "fps": float(camera_path.fps),
        "frames": [
            {"frame": int(frame), "K": K.tolist(), "world_to_camera": world_to_camera.tolist()}
            for frame, K, world_to_camera in zip(camera_path.frames, camera_path.K, camera_path.world_to_camera)
        ],
    }


def _matrix_field(entry: dict, field: str, shape: tuple, source: str, label: str) -> np.ndarray:
    value = entry.get(field)
    if value is None:
        raise CameraPathError(f"{source}: {label} has no '{field}'; {shape[0]}x{shape[1]} matrix expected")
    try:
        matrix = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise CameraPathError(
            f"{source}: {label} field '{field}' is not a {shape[0]}x{shape[1]} matrix of numbers") from None
    if matrix.shape != shape:
        raise CameraPathError(f"{source}: {label} field '{field}' has shape {matrix.shape}, expected {shape}")
    return matrix


def camera_path_from_dict(data, source: str = "camera path") -> CameraPath:
    """Read the format from a parsed JSON dict and validate it."""
    if not isinstance(data, dict):
        raise CameraPathError(
            f"{source}: expected a JSON object with format '{FORMAT_NAME}', got {type(data).__name__}")
    if data.get("format") != FORMAT_NAME:
        raise CameraPathError(f"{source}: format is {data.get('format')!r}, expected '{FORMAT_NAME}'; "
                              f"pass a camera path file written by DiMo")
    if data.get("version") != FORMAT_VERSION:
        raise CameraPathError(f"{source}: version {data.get('version')!r} is not supported (this reader knows "
                              f"version {FORMAT_VERSION}); export the camera path again")
    for key in ("width", "height", "fps", "frames"):
        if key not in data:
            raise CameraPathError(f"{source}: missing field '{key}'; export the camera path again")
    entries = data["frames"]
    if not isinstance(entries, list) or not entries:
        raise CameraPathError(f"{source}: 'frames' must be a non-empty list; export the camera path again")
    frames, Ks, world_to_cameras = [], [], []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise CameraPathError(f"{source}: frame #{index} is not an object with 'frame', 'K' and 'world_to_camera'")
        frame = entry.get("frame")
        if isinstance(frame, bool) or not isinstance(frame, int):
            raise CameraPathError(f"{source}: frame #{index} has frame number {frame!r}; an integer is expected")
        label = f"frame {frame}"
        frames.append(frame)
        Ks.append(_matrix_field(entry, "K", (3, 3), source, label))
        world_to_cameras.append(_matrix_field(entry, "world_to_camera", (4, 4), source, label))
    width, height, fps = data["width"], data["height"], data["fps"]
    if isinstance(fps, bool) or not isinstance(fps, (int, float)):
        raise CameraPathError(f"{source}: fps must be a positive number, got {fps!r}")
    camera_path = CameraPath(width=width, height=height, fps=float(fps), frames=np.array(frames, dtype=np.int64),
                             K=np.stack(Ks), world_to_camera=np.stack(world_to_cameras))
    return validate_camera_path(camera_path, source)


def load_camera_path(path) -> CameraPath:
    """Read and validate a camera path file; CameraPathError names the file and what is wrong."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CameraPathError(f"{path}: camera path file not found; check the path") from None
    except (OSError, UnicodeDecodeError) as error:
        raise CameraPathError(
            f"{path}: cannot read the camera path file ({error}); pass a readable JSON file") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise CameraPathError(f"{path}: not valid JSON ({error.msg} at line {error.lineno}); "
                              f"pass a camera path file written by DiMo") from None
    return camera_path_from_dict(data, source=str(path))


def save_camera_path(camera_path: CameraPath, path) -> Path:
    """Validate and write a camera path file atomically (`atomic_io`: temporary name in the same folder, then rename)."""
    path = Path(path)
    validate_camera_path(camera_path, source=str(path))
    write_json_atomic(path, camera_path_to_dict(camera_path))
    return path


def camera_fits_motion(camera_frames: int, camera_fps: float, motion_frames: int, model_fps: float) -> bool:
    """Whether a camera of `camera_frames` at `camera_fps` can film a motion of `motion_frames` at the model's fps:
    one camera frame per generated frame, a one-frame (still) camera, or the same duration at the camera's own fps
    (the rule the engine's `conform_camera` applies)."""
    if camera_frames in (motion_frames, 1):
        return True
    if abs(camera_fps - model_fps) <= 1e-6:
        return False
    return int(math.floor((camera_frames - 1) * model_fps / camera_fps + 1e-6)) + 1 == motion_frames


def camera_frames_for_motion(motion_frames: int, model_fps: float, camera_fps: float) -> int:
    """How many frames at `camera_fps` last as long as a motion of `motion_frames` at the model's fps (the most that
    do, so the shot ends with the clip's last frame)."""
    if abs(camera_fps - model_fps) <= 1e-6:
        return motion_frames
    longest = int(math.ceil(motion_frames * max(1.0, camera_fps / model_fps))) + 1
    same_duration = [count for count in range(longest, 1, -1)
                     if int(math.floor((count - 1) * model_fps / camera_fps + 1e-6)) + 1 == motion_frames]
    return same_duration[0] if same_duration else motion_frames
