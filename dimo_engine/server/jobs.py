"""The service's jobs: validated at submission, queued, and run one at a time by a single worker
thread that holds the model; progress, cancellation, the motion cache and per-frame outputs.

Nothing here knows HTTP: `app.py` saves uploads into a job's folder and calls `JobRunner`.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import shutil
import threading
import time
import traceback
import uuid
from pathlib import Path
from typing import Annotated

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from blender_addon.core import api_schema as api
from blender_addon.core.api_schema import JobStatus, Progress
from dimo_engine.camera import load_camera_path
from dimo_engine.driving import MAX_MOTION_FRAMES, check_driving_length, content_hash, encode_driving, read_driving
from dimo_engine.errors import InputError
from dimo_engine.motion_cache import MotionCache, model_id
from dimo_engine.motion_file import load_motion_file, motion_num_frames
from dimo_engine.reenact import GenerationCancelled, GenerationSettings, conform_camera, reenact
from dimo_engine.video_io import read_image, write_png

logger = logging.getLogger(__name__)

_Positive = Annotated[int, Field(strict=True, ge=1)]


class QueueFull(Exception):
    """A new job while `Limits.max_queued_jobs` wait already (HTTP 429 with Retry-After)."""


class Limits(BaseModel):
    """What one job may ask for; anything beyond is answered with a clear 4xx. Each is a whole number of at least 1."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    max_upload_bytes: _Positive = 512 * 1024 * 1024
    max_side: _Positive = 4096
    max_driving_frames: _Positive = 3000  # frames of the uploaded video, before resampling
    max_motion_frames: _Positive = MAX_MOTION_FRAMES  # frames at the model's fps, what is generated per camera
    max_cameras: _Positive = 16
    max_queued_jobs: _Positive = 16  # jobs waiting for the worker; more are refused so a loop cannot fill the disk

    def to_dict(self) -> dict:
        return self.model_dump()


class Job:
    """One request: its folder, status and progress. `version` grows on every change (for event streams)."""

    def __init__(self, job_id: str, folder: Path, num_cameras: int):
        self.id = job_id
        self.folder = folder
        self.num_cameras = num_cameras
        self.status = api.QUEUED
        self.progress = Progress()
        self.error: str | None = None
        self.version = 0
        self.created = time.time()
        self.cancel_requested = threading.Event()
        self.deleted = False
        self.inputs: dict = {}
        self.labels: dict[str, str] = {}  # stored input path -> how the client knows it (see `public`)
        self._lock = threading.Lock()

    def public(self, message: str) -> str:
        """`message` with every stored input path replaced by the upload field and the client's file name
        it came from, and any other path inside the job's folder cut to its name: the server's
        layout is not the client's business."""
        for path in sorted(self.labels, key=len, reverse=True):
            message = message.replace(path, self.labels[path])
        return message.replace(str(self.folder) + "/", "").replace(str(self.folder), "the job")

    def update(self, **fields) -> None:
        with self._lock:
            if self.status in api.TERMINAL_STATUSES and "status" not in fields:
                return  # late progress from a finished job must not move its numbers
            for name, value in fields.items():
                setattr(self, name, value)
            self.version += 1

    def set_progress(self, progress: Progress) -> None:
        with self._lock:
            if self.status in api.TERMINAL_STATUSES:
                return
            # Progress only moves forward, whatever order updates arrive in.
            progress.fraction = max(progress.fraction, self.progress.fraction)
            progress.step = max(progress.step, self.progress.step)
            progress.frames_done = max(progress.frames_done, self.progress.frames_done)
            self.progress = progress
            self.version += 1

    def to_dict(self) -> dict:
        with self._lock:
            return JobStatus(self.id, self.status, self.progress, self.error, self.num_cameras).to_dict()

    def camera_folder(self, camera_index: int) -> Path:
        return self.folder / "outputs" / f"camera_{camera_index:02d}"

    def frame_names(self) -> list[list[str]]:
        """Finished PNGs per camera (temporary files are hidden names, so never listed)."""
        names = []
        for index in range(self.num_cameras):
            folder = self.camera_folder(index)
            names.append(sorted(p.name for p in folder.glob("[0-9][0-9][0-9][0-9].png")) if folder.is_dir() else [])
        return names


class JobRunner:
    """Queue plus one worker thread running jobs on one loaded pipeline."""

    def __init__(self, pipe, work_dir: str | Path, limits: Limits | None = None, cache: MotionCache | None = None,
                 model_name: str = "dimo"):
        self.pipe = pipe
        self.work_dir = Path(work_dir)
        self.jobs_dir = self.work_dir / "jobs"
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self.limits = limits or Limits()
        self.cache = cache if cache is not None else MotionCache(self.work_dir / "motion_cache")
        self.model_name = model_name
        self.model_id = model_id(pipe)
        self.encode_count = 0  # driving videos actually encoded (cache misses), for tests and logs
        self.jobs: dict[str, Job] = {}
        self._jobs_lock = threading.Lock()
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._worker = threading.Thread(target=self._work, name="dimo-job-worker", daemon=True)
        if hasattr(pipe, "set_progress_bar_config"):
            pipe.set_progress_bar_config(disable=True)
        self._worker.start()

    # ----- submission --------------------------------------------------------------------

    def new_job_folder(self) -> tuple[str, Path]:
        """An opaque id and an empty folder for the uploads; ids never come from a request."""
        job_id = uuid.uuid4().hex
        folder = self.jobs_dir / job_id
        (folder / "inputs").mkdir(parents=True)
        return job_id, folder

    def queue_is_full(self) -> bool:
        with self._jobs_lock:
            return self._queue_is_full_locked()

    def _queue_is_full_locked(self) -> bool:
        return sum(job.status == api.QUEUED for job in self.jobs.values()) >= self.limits.max_queued_jobs

    def queue_full_message(self) -> str:
        return (f"{self.limits.max_queued_jobs} jobs are already waiting, the most this engine queues; "
                f"wait for one to finish (or cancel one) and send the job again")

    def submit(self, job_id: str, folder: Path, reference: Path, cameras: list[Path], driving: Path | None = None,
               motion: Path | None = None, reference_camera: Path | None = None, settings: dict | None = None,
               labels: dict[Path, str] | None = None) -> Job:
        """Validate the saved inputs (raising InputError, and removing the folder) and queue the job
        (raising QueueFull when `max_queued_jobs` wait already). `labels` names each stored input
        as the client knows it ("upload 'reference' (hero.png)"); errors use those names, not paths."""
        named = Job(job_id, folder, len(cameras))
        named.labels = {str(path): label for path, label in (labels or {}).items()}
        try:
            try:
                job = self._validate(job_id, folder, reference, cameras, driving, motion, reference_camera, settings or {})
            except InputError as error:
                raise InputError(named.public(str(error))) from None
            job.labels = named.labels
            with self._jobs_lock:
                if self._queue_is_full_locked():
                    raise QueueFull(self.queue_full_message())
                self.jobs[job_id] = job
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        self._queue.put(job_id)
        return job

    def _validate(self, job_id, folder, reference, cameras, driving, motion, reference_camera, settings) -> Job:
        limits, config = self.limits, self.pipe.config
        if (driving is None) == (motion is None):
            raise InputError("give exactly one of 'driving' (a video or a zip of images) and 'motion' (a .safetensors file from dimo encode-motion)")
        if not cameras:
            raise InputError("give at least one camera path JSON file in 'cameras'")
        if len(cameras) > limits.max_cameras:
            raise InputError(f"{len(cameras)} cameras were given, more than the limit of {limits.max_cameras}; split the job")
        generation_settings = GenerationSettings.from_dict(settings, "settings")
        read_image(reference, max_side=limits.max_side)
        inputs = {"reference": reference, "settings": generation_settings, "driving": driving, "motion": motion}
        if motion is not None:
            tokens = load_motion_file(motion, "motion")
            num_frames = motion_num_frames(tokens)
        else:
            inputs["driving_hash"] = content_hash(driving)
            cached = self.cache.path_for(inputs["driving_hash"], self.model_id)
            if cached.is_file():
                num_frames = motion_num_frames(load_motion_file(cached, "cached motion"))
            else:
                # The one decode of this job: what the encoders need, kept on disk until the worker takes it.
                frames, fps = self._read_driving(driving)
                num_frames = check_driving_length(frames.shape[0], fps, float(config.fps), "the driving clip")
                inputs["driving_frames"] = Path(folder) / "inputs" / "driving_frames.npy"
                inputs["driving_fps"] = fps
                np.save(inputs["driving_frames"], frames)
                del frames
        if num_frames > limits.max_motion_frames:
            raise InputError(f"the motion is {num_frames} frames at the model's {float(config.fps):g} fps, more than the "
                             f"limit of {limits.max_motion_frames}; shorten the driving video")
        inputs["cameras"] = [
            conform_camera(load_camera_path(path), num_frames, float(config.fps), f"camera {index}")
            for index, path in enumerate(cameras)
        ]
        inputs["reference_camera"] = load_camera_path(reference_camera) if reference_camera is not None else None
        job = Job(job_id, folder, len(cameras))
        job.inputs = inputs
        job.progress = Progress(frames_total=num_frames * len(cameras))
        return job

    # ----- queries and control -----------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        with self._jobs_lock:
            return self.jobs.get(job_id)

    def cancel(self, job: Job) -> None:
        job.cancel_requested.set()
        if job.status == api.QUEUED:
            job.update(status=api.CANCELLED)

    def delete(self, job: Job) -> None:
        with self._jobs_lock:
            self.jobs.pop(job.id, None)
        job.deleted = True
        self.cancel(job)
        if job.status != api.RUNNING:
            shutil.rmtree(job.folder, ignore_errors=True)
        # A running job's folder is removed by the worker once the job stops.

    def shutdown(self, timeout: float = 10.0) -> None:
        for job in list(self.jobs.values()):
            job.cancel_requested.set()
        self._queue.put(None)
        self._worker.join(timeout)

    # ----- the worker ----------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is None:
                return
            job = self.get(job_id)
            if job is None or job.status != api.QUEUED:
                continue
            job.update(status=api.RUNNING)
            try:
                self._run(job)
                job.update(status=api.DONE, progress=dataclasses.replace(job.progress, stage=api.STAGE_DONE, fraction=1.0,
                                                                         eta_s=0.0))
            except GenerationCancelled:
                job.update(status=api.CANCELLED)
            except InputError as error:
                job.update(status=api.FAILED, error=job.public(str(error)))
            except Exception as error:  # the service must outlive any one job
                logger.error("job %s failed:\n%s", job.id, traceback.format_exc())
                job.update(status=api.FAILED, error=job.public(f"the engine failed on this job ({type(error).__name__}: "
                                                             f"{error}); see the server log"))
            finally:
                job.inputs = {}
                if job.deleted:
                    shutil.rmtree(job.folder, ignore_errors=True)

    def _run(self, job: Job) -> None:
        inputs = job.inputs
        job.set_progress(dataclasses.replace(job.progress, stage=api.STAGE_ENCODING))
        motion = self._motion_for(inputs)
        if job.cancel_requested.is_set():
            raise GenerationCancelled()
        frames_done = [0]

        def write_frames(camera_index: int, first: int, frames: np.ndarray) -> None:
            folder = job.camera_folder(camera_index)
            folder.mkdir(parents=True, exist_ok=True)
            for offset, frame in enumerate(frames):
                write_png((np.clip(frame, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), folder / f"{first + offset:04d}.png")
            frames_done[0] += len(frames)

        def on_progress(progress: Progress) -> None:
            job.set_progress(dataclasses.replace(progress, frames_done=frames_done[0]))

        reenact(
            self.pipe,
            read_image(inputs["reference"], max_side=self.limits.max_side),
            motion,
            inputs["cameras"],
            reference_camera=inputs["reference_camera"],
            settings=inputs["settings"],
            on_frames=write_frames,
            on_progress=on_progress,
            is_cancelled=job.cancel_requested.is_set,
        )

    def _read_driving(self, path: Path) -> tuple[np.ndarray, float]:
        limits = self.limits
        return read_driving(path, float(self.pipe.config.fps), max_side=limits.max_side,
                            max_frames=limits.max_driving_frames, max_motion_frames=limits.max_motion_frames,
                            source="the driving clip")

    def _motion_for(self, inputs: dict):
        if inputs["motion"] is not None:
            return load_motion_file(inputs["motion"], "motion")
        motion = self.cache.get(inputs["driving_hash"], self.model_id)
        if motion is None:
            if "driving_frames" in inputs:  # decoded at submission
                frames, fps = np.load(inputs["driving_frames"], mmap_mode="r"), inputs["driving_fps"]
            else:  # the cached motion it was submitted with has gone since
                frames, fps = self._read_driving(inputs["driving"])
            motion = encode_driving(self.pipe, frames, fps)
            del frames
            self.encode_count += 1
            self.cache.put(inputs["driving_hash"], self.model_id, motion)
        return motion
