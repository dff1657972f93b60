"""The worker side of Generate (a background thread, no bpy): send a `GenerateRequest` to the engine,
follow the job's progress, and download every camera's frames into a new take folder, committed only
when all are complete.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from . import long_work, takes
from .engine_client import EngineClient, EngineError, JobStatus, as_sentence
from .generate_request import GenerateRequest

# How long a cancelled job may go on before the engine is given up as stuck.
CANCEL_WAIT_S = 30.0


@dataclass
class GeneratedTake:
    camera_name: str
    take_dir: Path
    num_frames: int


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
    """The job's last status, following its event stream (or polls); on the artist's cancel, ask the engine once."""
    cancel_sent_at = None
    last = None
    for status in client.follow_job(job_id):
        if status is not None:
            last = status
            job.post({"stage": status.stage, "fraction": status.fraction, "status": status.status})
            if status.finished:
                return status
        if job.cancel_requested:
            if cancel_sent_at is None:
                job.post({"stage": "cancelling", "fraction": last.fraction if last else 0.0})
                try:
                    client.cancel_job(job_id)
                except EngineError:
                    pass  # the job may have ended meanwhile; the next status tells
                cancel_sent_at = time.monotonic()
            elif time.monotonic() - cancel_sent_at > CANCEL_WAIT_S:
                raise EngineError(f"The engine did not confirm the cancel within {CANCEL_WAIT_S:g} s; restart the engine.")
    raise EngineError("The engine stopped reporting the job before it ended; see the engine's log.")


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
