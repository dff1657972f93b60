"""Where a Generate press becomes takes: export the target cameras in the character frame, send the
job to the engine from a background job, follow its progress, download the frames into new take
folders and load them as image sequences.

`prepare_generate` (main thread, quick) and `run_generate` (worker, no bpy) are plain functions the
tests call; `start_generate` wires them to the shared job mechanism in `long_work.py`.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import long_work, takes
from .engine_client import EngineClient, EngineError, JobStatus, as_sentence

# The engine's frame rate when it has not said otherwise (GET /v1/info); and that of a zip of frames, which
# says none (driving clips rendered in Blender are 24 fps).
DEFAULT_MODEL_FPS = 12.0
ZIP_FRAMES_FPS = 24.0
_FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")

STATUS_POLL_S = 0.5
# How many status polls in a row may fail before the job is given up as lost.
MAX_POLL_FAILURES = 5
CANCEL_WAIT_S = 30.0


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


@dataclass
class GeneratedTake:
    camera_name: str
    take_dir: Path
    num_frames: int


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
        },
        use_image_plane=bool(settings.use_image_plane),
        texture_object_name=settings.texture_object.name if settings.texture_object else "",
    )


def run_generate(job: long_work.BackgroundJob, client: EngineClient, request: GenerateRequest) -> list[GeneratedTake]:
    """Worker: send the job, follow it, download every camera's frames into a new take folder."""
    job_id = None
    try:
        job.post({"stage": "uploading", "fraction": 0.0})
        job_id = client.submit_job(
            reference=request.reference,
            cameras=[target.camera_file for target in request.targets],
            driving=request.driving,
            motion=request.motion,
            reference_camera=request.reference_camera,
            settings=request.settings,
        )
        status = _follow_job(job, client, job_id)
        if status.status == "failed":
            raise EngineError(as_sentence(status.error) if status.error else "The engine reported the job as failed without a reason; see the engine's log.")
        if status.status == "cancelled":
            raise long_work.JobCancelled()
        return _download_takes(job, client, job_id, request)
    finally:
        shutil.rmtree(request.work_dir, ignore_errors=True)
        if job_id is not None:
            try:
                client.delete_job(job_id)  # the frames are safe here, or not wanted
            except EngineError:
                pass  # the engine cleans old jobs itself


def _follow_job(job: long_work.BackgroundJob, client: EngineClient, job_id: str) -> JobStatus:
    failures = 0
    cancel_sent_at = None
    while True:
        try:
            status = client.job_status(job_id)
            failures = 0
        except EngineError:
            failures += 1
            if failures >= MAX_POLL_FAILURES:
                raise
            status = None
        if status is not None:
            job.post({"stage": status.progress.get("stage") or status.status, "fraction": status.fraction, "status": status.status})
            if status.finished:
                return status
        if job.cancel_requested:
            if cancel_sent_at is None:
                job.post({"stage": "cancelling", "fraction": status.fraction if status else 0.0})
                try:
                    client.cancel_job(job_id)
                except EngineError:
                    pass  # the job may have ended meanwhile; the next status tells
                cancel_sent_at = time.monotonic()
            elif time.monotonic() - cancel_sent_at > CANCEL_WAIT_S:
                raise EngineError(f"The engine did not confirm the cancel within {CANCEL_WAIT_S:g} s; restart the engine.")
        time.sleep(STATUS_POLL_S)


def _download_takes(job: long_work.BackgroundJob, client: EngineClient, job_id: str, request: GenerateRequest) -> list[GeneratedTake]:
    frame_names = client.frame_names(job_id)
    if len(frame_names) != len(request.targets):
        raise EngineError(
            f"The engine returned frames for {len(frame_names)} cameras but {len(request.targets)} were sent; update the engine."
        )
    total = sum(len(names) for names in frame_names)
    if total == 0:
        raise EngineError("The engine finished the job without any frames; see the engine's log.")
    partials: list[Path] = []
    results: list[GeneratedTake] = []
    done = 0
    try:
        for camera_index, (target, names) in enumerate(zip(request.targets, frame_names)):
            partial = takes.new_partial_dir(target.shot_dir)
            partials.append(partial)
            generated = []
            # Frame names are zero-padded numbers; order by length first so 10000.png follows 9999.png.
            for name in sorted(names, key=lambda n: (len(n), n)):
                job.raise_if_cancelled()
                generated.append(client.download_frame(job_id, camera_index, name, partial / f"generated_{name}"))
                done += 1
                job.post({"stage": "downloading", "fraction": done / total})
            takes.spread_over_scene_frames(generated, request.num_frames, partial)
        # Commit only when every camera is complete, so a failure leaves no partial take behind.
        for target, partial in zip(request.targets, partials):
            take_dir = takes.commit_take(partial, target.shot_dir)
            results.append(GeneratedTake(target.camera_name, take_dir, len(list(take_dir.glob("*.png")))))
    except BaseException:
        for partial in partials:
            if partial.exists():
                takes.discard_partial(partial)
        raise
    return results


# --- wiring to the job mechanism (main thread) ---------------------------------------------

JOB_NAME = "generate"


def current_job() -> long_work.BackgroundJob | None:
    """The last Generate job of this session, finished or not."""
    return long_work.latest_job(JOB_NAME)


def _job_state():
    import bpy

    return bpy.context.window_manager.dimo_job


def _redraw_panels() -> None:
    import bpy

    for window in bpy.context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()


def load_generated_takes(request: GenerateRequest, results: list[GeneratedTake]) -> list:
    """Main thread: load every committed take as an image sequence; returns the take items."""
    import bpy

    scene = bpy.data.scenes[request.scene_name]
    texture_obj = bpy.data.objects.get(request.texture_object_name) if request.texture_object_name else None
    items = []
    for result in results:
        camera_obj = bpy.data.objects.get(result.camera_name)
        if camera_obj is None:
            raise ValueError(f"The camera {result.camera_name} was deleted while generating; its take is in {result.take_dir}.")
        items.append(
            takes.load_take(
                scene, camera_obj, result.take_dir, request.frame_start, result.num_frames,
                use_image_plane=request.use_image_plane, texture_obj=texture_obj,
            )
        )
    return items


def start_generate(client: EngineClient, request: GenerateRequest) -> long_work.BackgroundJob:
    """Run the request in the background; progress and results land in `window_manager.dimo_job`."""
    if long_work.is_running(JOB_NAME):
        raise ValueError("A DiMo job is already running; wait for it or cancel it.")

    def on_message(_job, message):
        state = _job_state()
        state.stage = str(message.get("stage", ""))
        state.progress = min(1.0, max(0.0, float(message.get("fraction", 0.0))))
        state.message = f"{state.stage.capitalize()} {state.progress * 100:.0f}%"
        _redraw_panels()

    def on_done(_job, results):
        items = load_generated_takes(request, results)
        state = _job_state()
        state.progress, state.stage, state.error = 1.0, "done", ""
        state.message = "Loaded " + ", ".join(f"{item.name} ({item.num_frames} frames)" for item in items)
        _redraw_panels()

    def on_error(_job, sentence):
        state = _job_state()
        state.stage, state.error = "failed", sentence
        state.message = ""
        _redraw_panels()

    def on_cancelled(_job):
        state = _job_state()
        state.stage, state.error = "cancelled", ""
        state.message = "Cancelled; no take was written."
        _redraw_panels()

    state = _job_state()
    state.stage, state.progress, state.error, state.message = "starting", 0.0, "", "Starting"
    return long_work.BackgroundJob(
        JOB_NAME,
        lambda job: run_generate(job, client, request),
        on_message=on_message,
        on_done=on_done,
        on_error=on_error,
        on_cancelled=on_cancelled,
    ).start()
