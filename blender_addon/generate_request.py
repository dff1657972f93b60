"""What a Generate press asks of the engine, gathered on the main thread: the shot's checks (anchor,
reference, driving clip, a frame range the clip fits) and every target camera exported in the character
frame into a `GenerateRequest` that holds no bpy data. `generate_worker` sends it; `generate_job` runs it.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from . import takes

# The engine's frame rate when it has not said otherwise (GET /v1/info); and that of a zip of frames, which
# says none (driving clips rendered in Blender are 24 fps).
DEFAULT_MODEL_FPS = 12.0
ZIP_FRAMES_FPS = 24.0
_FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")

@dataclass
class TargetCamera:
    camera_name: str
    camera_file: Path  # camera path JSON in the character frame
    shot_dir: Path  # //dimo/<shot>


@dataclass
class GenerateRequest:
    """Everything the worker needs, gathered on the main thread; holds no bpy data."""

    scene_name: str
    reference: Path
    targets: list[TargetCamera]
    frame_start: int
    num_frames: int
    work_dir: Path
    driving: Path | None = None
    motion: Path | None = None
    reference_camera: Path | None = None
    settings: dict = field(default_factory=dict)
    use_image_plane: bool = False
    texture_object_name: str = ""


def frame_range(scene) -> tuple[int, int]:
    settings = scene.dimo
    if settings.use_scene_range:
        return scene.frame_start, scene.frame_end
    return settings.frame_start, settings.frame_end


def target_camera_objects(scene, selected_objects=(), mode: str | None = None) -> list:
    """The cameras to generate for: the scene camera, the selected cameras, or the marker cameras in range."""
    mode = mode or scene.dimo.target_cameras
    if mode == "SCENE":
        if scene.camera is None:
            raise ValueError("The scene has no active camera; set one in the Scene properties or choose other target cameras.")
        return [scene.camera]
    if mode == "SELECTED":
        cameras = [obj for obj in selected_objects if obj.type == "CAMERA"]
        if not cameras:
            raise ValueError("No camera is selected; select the target cameras in the viewport.")
        return sorted(cameras, key=lambda obj: obj.name)
    start, end = frame_range(scene)
    cameras = []
    for marker in sorted(scene.timeline_markers, key=lambda m: m.frame):
        if marker.camera is not None and start <= marker.frame <= end and marker.camera not in cameras:
            cameras.append(marker.camera)
    if not cameras:
        raise ValueError(f"No timeline marker in frames {start}-{end} is bound to a camera; bind cameras to markers (Ctrl B in the timeline).")
    return cameras


def resize_camera_path(camera_path, long_side: int):
    """The same camera at an image size whose long side is `long_side` (intrinsics scaled with it)."""
    scale = long_side / max(camera_path.width, camera_path.height)
    width = max(8, int(round(camera_path.width * scale)))
    height = max(8, int(round(camera_path.height * scale)))
    return camera_path.resized(width, height)


def _existing_file(path_setting: str, role: str, fix: str) -> Path:
    import bpy

    if not path_setting.strip():
        raise ValueError(f"No {role} is set; {fix}.")
    path = Path(bpy.path.abspath(path_setting))
    if not path.is_file():
        raise ValueError(f"The {role} {path} does not exist; {fix}.")
    return path


def driving_clip_length(path: Path, model_fps: float = DEFAULT_MODEL_FPS) -> tuple[int, float] | None:
    """(frames, fps) of a driving video, a zip of frames or a motion file (frames at the model's fps), from its
    header; None when Blender cannot tell (the engine then checks it)."""
    import json
    import struct
    import zipfile

    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            with open(path, "rb") as handle:
                header = json.loads(handle.read(struct.unpack("<Q", handle.read(8))[0]))
            return int(header["body"]["shape"][1]), float(model_fps)
        if suffix == ".zip":
            with zipfile.ZipFile(path) as bundle:
                count = sum(Path(name).suffix.lower() in _FRAME_SUFFIXES for name in bundle.namelist())
            return (count, ZIP_FRAMES_FPS) if count else None
    except (OSError, ValueError, KeyError, IndexError, TypeError, struct.error, zipfile.BadZipFile):
        return None
    import bpy

    try:
        clip = bpy.data.movieclips.load(str(path))
    except RuntimeError:
        return None
    try:
        frames, fps = int(clip.frame_duration), float(clip.fps)
    finally:
        bpy.data.movieclips.remove(clip)
    return (frames, fps) if frames > 1 and fps > 0 else None


def motion_frames(source_frames: int, source_fps: float, model_fps: float) -> int:
    """Frames a clip gives at the model's fps (the count of the engine's `resample_indices`)."""
    return max(1, math.ceil(source_frames * model_fps / source_fps - 1e-6))


def check_range_fits_driving(scene, start: int, end: int, driving_path: Path, model_fps: float = DEFAULT_MODEL_FPS) -> None:
    """ValueError naming the frame range that fits when the range and the driving clip last differently."""
    from .camera_export import scene_fps
    from .core.camera_path import camera_fits_motion, camera_frames_for_motion

    length = driving_clip_length(driving_path, model_fps)
    if length is None:
        return
    motion = motion_frames(*length, model_fps)
    fps = scene_fps(scene)
    count = end - start + 1
    if camera_fits_motion(count, fps, motion, model_fps):
        return
    fitting = camera_frames_for_motion(motion, model_fps, fps)
    where = "the scene's End frame" if scene.dimo.use_scene_range else "End in the DiMo panel's frame range"
    raise ValueError(
        f"The frame range {start}-{end} is {count} frames at {fps:g} fps ({count / fps:.1f} s) but the driving clip "
        f"{driving_path.name} lasts {motion / model_fps:.1f} s ({motion} frames at the model's {model_fps:g} fps); "
        f"set {where} to {start + fitting - 1} for the clip's {fitting} frames at {fps:g} fps, or to {start} for a "
        f"still camera."
    )


def prepare_generate(scene, selected_objects=(), model_fps: float = DEFAULT_MODEL_FPS) -> GenerateRequest:
    """Check the shot settings and export every target camera; raises ValueError with the fix."""
    from .camera_export import export_camera_path
    from .core.camera_path import save_camera_path

    settings = scene.dimo
    if settings.anchor is None:
        raise ValueError("No character anchor is set; pick the empty or armature root of the character in the DiMo panel.")
    reference = _existing_file(settings.reference_image, "reference image", "choose a picture of the character or render one from the camera")
    driving_path = _existing_file(settings.driving_video, "driving video", "choose a video of the motion or render a driving clip")
    reference_camera = None
    if settings.reference_camera.strip():
        reference_camera = _existing_file(settings.reference_camera, "reference camera file", "render the reference again or clear the field")
    start, end = frame_range(scene)
    if end < start:
        raise ValueError(f"The frame range {start}-{end} is empty; set an end frame after the start frame.")
    check_range_fits_driving(scene, start, end, driving_path, model_fps)
    cameras = target_camera_objects(scene, selected_objects)
    root = takes.dimo_root()
    work_dir = Path(tempfile.mkdtemp(prefix="dimo-job-"))
    targets = []
    try:
        for camera_obj in cameras:
            camera_path = export_camera_path(scene, camera_obj, settings.anchor, start, end)
            camera_path = resize_camera_path(camera_path, int(settings.resolution))
            camera_file = work_dir / f"camera_{len(targets):02d}.json"
            save_camera_path(camera_path, camera_file)
            targets.append(TargetCamera(camera_obj.name, camera_file, root / takes.safe_name(camera_obj.name)))
    except Exception:
        shutil.rmtree(work_dir, ignore_errors=True)
        raise
    suffix = driving_path.suffix.lower()
    return GenerateRequest(
        scene_name=scene.name,
        reference=reference,
        targets=targets,
        frame_start=start,
        num_frames=end - start + 1,
        work_dir=work_dir,
        driving=None if suffix == ".safetensors" else driving_path,
        motion=driving_path if suffix == ".safetensors" else None,
        reference_camera=reference_camera,
        settings={
            "num_inference_steps": int(settings.num_inference_steps),
            "motion_guidance_scale": float(settings.motion_guidance_scale),
            "seed": int(settings.seed),
            # 0 leaves the height to the engine (as the driving video shows the person)
            **({"character_height": float(settings.character_height)} if settings.character_height > 0 else {}),
        },
        use_image_plane=bool(settings.use_image_plane),
        texture_object_name=settings.texture_object.name if settings.texture_object else "",
    )
