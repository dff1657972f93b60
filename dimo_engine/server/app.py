"""The engine's HTTP API (docs/formats.md, "Engine service"): FastAPI routes that authenticate,
save uploads under names of their own, and hand them to the `JobRunner`.

No path from a request is trusted: uploads are stored as `inputs/reference.png`,
`inputs/camera_00.json`, ... and only the file suffix is taken from the client, from a whitelist.
Nothing is read from a request before its token is checked, and no body is read past the
upload limit (`RequestGate`, which runs before FastAPI parses a form).
"""

import asyncio
import json
import re
import secrets
import time
import shutil
import zipfile
from pathlib import Path
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from starlette.datastructures import Headers

from blender_addon.core import api_schema as api
from blender_addon.core.api_schema import Progress
from dimo_engine import __version__
from dimo_engine.errors import InputError
from dimo_engine.server.jobs import Job, JobRunner, Limits, QueueFull
from dimo_engine.video_io import IMAGE_SUFFIXES, VIDEO_SUFFIXES, still_image_message

_FRAME_NAME = re.compile(r"^[0-9]{4}\.png$")
_CHUNK = 1 << 20


class ErrorOut(BaseModel):
    detail: str


class HealthOut(BaseModel):
    status: Literal[api.HEALTH_OK]
    version: str


class InfoOut(BaseModel):
    model: str
    device: str
    dtype: str
    version: str
    num_frames: int
    fps: float
    width: int
    height: int
    limits: Limits


class JobCreatedOut(BaseModel):
    job_id: str
    status: Literal[api.QUEUED]


class JobOut(BaseModel):
    job_id: str
    status: Literal[api.JOB_STATUSES]
    progress: Progress
    error: str | None
    cameras: int


class FramesOut(BaseModel):
    cameras: list[list[str]]


class DeletedOut(BaseModel):
    job_id: str
    deleted: bool


_ERRORS = {status: {"model": ErrorOut} for status in (401, 404, 413, 422, 429)}
_TOKEN_HELP = ("missing or wrong token; send 'Authorization: Bearer <token>' with the token printed by 'dimo serve' "
               "(also in its token file)")
# Seconds a client is asked to wait when the queue is full: about one small job on a CPU.
_RETRY_AFTER_S = 30


def create_app(runner: JobRunner, token: str) -> FastAPI:
    """The FastAPI app serving `runner`; every route but health needs `Authorization: Bearer <token>`."""
    app = FastAPI(title="DiMo engine", version=__version__,
                  description="Re-enact a driving video with a reference character, seen from explicit cameras.")
    app.state.runner = runner
    bearer = HTTPBearer(auto_error=False, description="The token printed by `dimo serve` and written to its token file.")
    limits = runner.limits

    def authorize(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        # RequestGate has refused a bad token before the body was read; this dependency puts the
        # security scheme into the OpenAPI schema and holds for any route the gate would not see.
        if credentials is None or not _token_matches(credentials.credentials, token):
            raise HTTPException(401, _TOKEN_HELP)

    def job_or_404(job_id: str) -> Job:
        job = runner.get(job_id)
        if job is None:
            raise HTTPException(404, f"no job with id '{job_id[:64]}'; it was never created or has been deleted")
        return job

    @app.exception_handler(InputError)
    async def input_error(request: Request, error: InputError):
        return JSONResponse({"detail": str(error)}, status_code=422)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError):
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()) if part not in ("body", "path", "query"))
        message = first.get("msg", "invalid request")
        return JSONResponse({"detail": f"request field '{where or 'body'}': {message}; see /docs for the expected form"},
                            status_code=422)

    @app.exception_handler(QueueFull)
    async def queue_full(request: Request, error: QueueFull):
        return JSONResponse({"detail": str(error)}, status_code=429, headers={"Retry-After": str(_RETRY_AFTER_S)})

    app.add_middleware(RequestGate, token=token, runner=runner)

    @app.get(api.HEALTH.template, response_model=HealthOut)
    def health():
        return {"status": api.HEALTH_OK, "version": __version__}

    @app.get(api.INFO.template, response_model=InfoOut, responses=_ERRORS, dependencies=[Depends(authorize)])
    def info():
        pipe, config = runner.pipe, runner.pipe.config
        return {
            "model": runner.model_name,
            "device": str(getattr(pipe, "device", "cpu")),
            "dtype": str(getattr(pipe, "dtype", "torch.float32")).replace("torch.", ""),
            "version": __version__,
            "num_frames": int(config.num_frames),
            "fps": float(config.fps),
            "width": int(config.width),
            "height": int(config.height),
            "limits": limits.to_dict(),
        }

    @app.post(api.CREATE_JOB.template, status_code=202, response_model=JobCreatedOut, responses=_ERRORS,
              dependencies=[Depends(authorize)])
    def create_job(
        reference: Annotated[UploadFile, File(description="Reference image of the character (PNG or JPEG).")],
        cameras: Annotated[list[UploadFile], File(description="One or more camera path JSON files.")],
        driving: Annotated[UploadFile | None, File(description="Driving video (mp4, mov, webm, gif) or a zip of images.")] = None,
        motion: Annotated[UploadFile | None, File(description="Motion tokens (.safetensors) from 'dimo encode-motion'.")] = None,
        reference_camera: Annotated[UploadFile | None, File(description="Camera path JSON of the reference image.")] = None,
        settings: Annotated[str | None, Form(description=f"JSON: {', '.join(api.SETTINGS)}.")] = None,
    ):
        job_id, folder = runner.new_job_folder()
        labels: dict[Path, str] = {}

        def save(upload: UploadFile, field: str, path: Path, number: int | None = None) -> Path:
            labels[path] = f"upload '{field}'{'' if number is None else f' #{number}'} ({_client_name(upload)})"
            return _save(upload, path)

        try:
            inputs = folder / "inputs"
            reference_path = save(reference, api.UPLOAD_REFERENCE, inputs / f"reference{_suffix(reference, IMAGE_SUFFIXES, '.png')}")
            camera_paths = [save(upload, api.UPLOAD_CAMERAS, inputs / f"camera_{index:02d}.json", index + 1)
                            for index, upload in enumerate(cameras[: limits.max_cameras + 1])]
            driving_path = motion_path = reference_camera_path = None
            if driving is not None:
                suffix = (Path(driving.filename or "").suffix or "").lower()
                if suffix == ".zip":
                    archive = save(driving, api.UPLOAD_DRIVING, inputs / "driving.zip")
                    driving_path = _extract_frames(archive, inputs / "driving_frames",
                                                   limits.max_driving_frames, limits.max_upload_bytes)
                    labels[driving_path] = labels[archive]
                elif suffix in VIDEO_SUFFIXES:
                    driving_path = save(driving, api.UPLOAD_DRIVING, inputs / f"driving{suffix}")
                elif suffix in IMAGE_SUFFIXES:
                    raise InputError(still_image_message(f"upload 'driving' ({_client_name(driving)})"))
                else:
                    raise InputError(f"upload 'driving' ({_client_name(driving)}) has the unsupported type "
                                     f"'{suffix or 'none'}'; send an mp4, mov, webm or gif video, or a zip of PNG/JPEG frames")
            if motion is not None:
                motion_path = save(motion, api.UPLOAD_MOTION, inputs / "motion.safetensors")
            if reference_camera is not None:
                reference_camera_path = save(reference_camera, api.UPLOAD_REFERENCE_CAMERA, inputs / "reference_camera.json")
            settings_dict = _parse_settings(settings)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        job = runner.submit(job_id, folder, reference_path, camera_paths, driving=driving_path, motion=motion_path,
                            reference_camera=reference_camera_path, settings=settings_dict, labels=labels)
        return {"job_id": job.id, "status": api.QUEUED}

    @app.get(api.JOB.template, response_model=JobOut, responses=_ERRORS, dependencies=[Depends(authorize)])
    def job_status(job_id: str):
        return job_or_404(job_id).to_dict()

    @app.get(api.JOB_EVENTS.template, responses={**_ERRORS, 200: {"content": {api.EVENTS_MEDIA_TYPE: {}}}},
             dependencies=[Depends(authorize)])
    async def job_events(job_id: str):
        job = job_or_404(job_id)

        async def stream():
            seen, quiet_since = -1, time.monotonic()
            while True:
                version = job.version
                if version != seen:
                    seen, quiet_since = version, time.monotonic()
                    snapshot = job.to_dict()
                    yield api.format_event(api.STATUS_EVENT, snapshot)
                    if snapshot["status"] in api.TERMINAL_STATUSES or job.deleted:
                        return
                elif time.monotonic() - quiet_since >= api.HEARTBEAT_S:
                    quiet_since = time.monotonic()
                    yield api.HEARTBEAT
                await asyncio.sleep(0.1)

        return StreamingResponse(stream(), media_type=api.EVENTS_MEDIA_TYPE,
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.post(api.CANCEL_JOB.template, response_model=JobOut, responses=_ERRORS, dependencies=[Depends(authorize)])
    def cancel_job(job_id: str):
        job = job_or_404(job_id)
        runner.cancel(job)
        return job.to_dict()

    @app.get(api.FRAMES.template, response_model=FramesOut, responses=_ERRORS, dependencies=[Depends(authorize)])
    def list_frames(job_id: str):
        return {"cameras": job_or_404(job_id).frame_names()}

    @app.get(api.FRAME.template, response_class=FileResponse,
             responses={**_ERRORS, 200: {"content": {"image/png": {}}}}, dependencies=[Depends(authorize)])
    def get_frame(job_id: str, camera_index: int, name: str):
        job = job_or_404(job_id)
        if not 0 <= camera_index < job.num_cameras:
            raise HTTPException(404, f"camera index {camera_index} is out of range; this job has {job.num_cameras} camera(s)")
        path = job.camera_folder(camera_index) / name
        if not _FRAME_NAME.match(name) or not path.is_file():
            raise HTTPException(404, f"frame '{name[:32]}' of camera {camera_index} is not written (yet); "
                                     f"list the written frames with {api.FRAMES.method} {api.FRAMES.template}")
        return FileResponse(path, media_type="image/png")

    @app.delete(api.DELETE_JOB.template, response_model=DeletedOut, responses=_ERRORS, dependencies=[Depends(authorize)])
    def delete_job(job_id: str):
        job = job_or_404(job_id)
        runner.delete(job)
        return {"job_id": job.id, "deleted": True}

    return app


def _token_matches(given: str, token: str) -> bool:
    return secrets.compare_digest(given.encode(), token.encode())


class _BodyTooLarge(Exception):
    """Raised into the app's body reader when a request passes the upload limit."""


class RequestGate:
    """ASGI middleware in front of every `/v1/` route but health, run before any body is read.

    FastAPI parses a multipart form (spooling files to disk) before it runs dependencies, so the
    token check there would come after a whole upload is stored. Here a request without the token
    is answered 401 unread, a new job while the queue is full 429, and a body is counted as it
    streams in: past the limit (with or without a Content-Length) reading stops, the form parser
    drops its partial files, and the answer is 413.
    """

    def __init__(self, app, token: str, runner: JobRunner):
        self.app = app
        self.token = token
        self.runner = runner

    async def __call__(self, scope, receive, send):
        if (scope["type"] != "http" or not scope["path"].startswith(api.API_PREFIX)
                or any(scope["path"] == route.template for route in api.OPEN_ROUTES)):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        scheme, _, given = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not _token_matches(given.strip(), self.token):
            await _answer(send, 401, _TOKEN_HELP, {"WWW-Authenticate": "Bearer"})
            return
        if api.CREATE_JOB.match(scope["method"], scope["path"]) is not None and self.runner.queue_is_full():
            await _answer(send, 429, self.runner.queue_full_message(), {"Retry-After": str(_RETRY_AFTER_S)})
            return
        max_bytes = self.runner.limits.max_upload_bytes
        too_large = _too_large_message(max_bytes)
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > max_bytes:
            await _answer(send, 413, f"the upload is {int(length) // 2**20} MiB, more than the "
                                     f"{max_bytes // 2**20} MiB limit; send a shorter or smaller video")
            return
        received = 0
        overflowed = False

        async def counted_receive():
            nonlocal received, overflowed
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    overflowed = True
                    raise _BodyTooLarge()
            return message

        async def guarded_send(message):
            if not overflowed:  # the app's own answer to its aborted read is replaced by the 413 below
                await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not overflowed:
                raise
        if overflowed:
            await _answer(send, 413, too_large)


def _too_large_message(max_bytes: int) -> str:
    return f"the upload is larger than the {max_bytes // 2**20} MiB limit; send a shorter or smaller video"


async def _answer(send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw_headers += [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


def _save(upload: UploadFile, path: Path) -> Path:
    """Copy an upload (already within the limit: RequestGate counted the body) to its own name."""
    with open(path, "wb") as target:
        shutil.copyfileobj(upload.file, target, _CHUNK)
    return path


def _client_name(upload: UploadFile) -> str:
    """The client's file name, for messages only: its last part, printable, at most 64 characters."""
    name = Path((upload.filename or "").replace("\\", "/")).name
    name = "".join(character for character in name if character.isprintable())
    return (name[:61] + "...") if len(name) > 64 else (name or "no file name")


def _suffix(upload: UploadFile, allowed: tuple[str, ...], default: str) -> str:
    suffix = Path(upload.filename or "").suffix.lower()
    return suffix if suffix in allowed else default


def _parse_settings(text: str | None) -> dict:
    if text is None or not text.strip():
        return {}
    try:
        settings = json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(f"{api.FORM_SETTINGS} is not valid JSON ({error.msg}); send e.g. {api.SETTINGS_EXAMPLE}") from None
    if not isinstance(settings, dict):
        raise InputError(f"{api.FORM_SETTINGS} must be a JSON object like {api.SETTINGS_EXAMPLE}")
    return settings


def _extract_frames(archive: Path, folder: Path, max_frames: int, max_bytes: int) -> Path:
    """Images of a zip, renamed 00000.png, 00001.jpg, ... in member-name order; member paths are never used."""
    folder.mkdir()
    try:
        with zipfile.ZipFile(archive) as bundle:
            members = sorted((m for m in bundle.infolist() if not m.is_dir()
                              and Path(m.filename).suffix.lower() in IMAGE_SUFFIXES
                              and not Path(m.filename).name.startswith(".") and "__MACOSX" not in m.filename),
                             key=lambda m: m.filename)
            if not members:
                raise InputError("the driving zip holds no PNG/JPEG images; zip the frames 0000.png, 0001.png, ...")
            if len(members) > max_frames:
                raise InputError(f"the driving zip holds {len(members)} images, more than the {max_frames} frame limit; shorten it")
            if sum(m.file_size for m in members) > 4 * max_bytes:
                raise InputError("the driving zip unpacks to more than the upload limit allows; send fewer or smaller frames")
            for index, member in enumerate(members):
                with bundle.open(member) as source, open(folder / f"{index:05d}{Path(member.filename).suffix.lower()}", "wb") as target:
                    shutil.copyfileobj(source, target, _CHUNK)
    except zipfile.BadZipFile as error:
        raise InputError(f"the driving zip cannot be opened ({error}); zip the frames again") from None
    archive.unlink()
    return folder
