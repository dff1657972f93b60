"""HTTP client of the DiMo engine service (docs/formats.md, "Engine service"), standard library only.

Every failure becomes an `EngineError` whose message is one sentence an artist can act on;
every call has a timeout, so a hung engine can never hang the caller.
"""

from __future__ import annotations

import contextlib
import json
import mimetypes
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

from .core import api_schema as api
from .core.api_schema import JobStatus
from .core.atomic_io import write_bytes_atomic

DEFAULT_TIMEOUT_S = 10.0
# Uploads carry a video, so they may take longer than a status poll.
UPLOAD_TIMEOUT_S = 120.0
# Following a job without its event stream: a status request this often, and how many may fail in a row
# before the job is given up as lost.
STATUS_POLL_S = 0.5
MAX_POLL_FAILURES = 5


class EngineError(Exception):
    """The engine could not be reached or refused a request; the message is one sentence for the artist."""


# Routes every DiMo engine answers, with the fields it answers; a server answering them with "not found"
# is something else.
_ENGINE_ROUTES = {route.path(): fields for route, fields in api.REQUIRED_FIELDS.items()}


def as_sentence(text: str) -> str:
    """The engine's messages are lower-case clauses; the panel shows them as sentences."""
    text = " ".join(str(text).split())
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def _multipart_body(fields: dict[str, str], files: list[tuple[str, Path]]) -> tuple[bytes, str]:
    """Encode form fields and files as multipart/form-data; returns (body, content type)."""
    boundary = f"dimo-{uuid.uuid4().hex}"
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value.encode("utf-8")
            + b"\r\n"
        )
    for name, path in files:
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        header = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{path.name}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        )
        parts.append(header.encode() + path.read_bytes() + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class EngineClient:
    """Talks to one running engine at `url` with a Bearer `token`."""

    def __init__(self, url: str, token: str = "", timeout: float = DEFAULT_TIMEOUT_S):
        url = (url or "").strip().rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise EngineError(
                f"The engine URL '{url}' is not an http:// address; set it in the DiMo add-on preferences."
            )
        try:
            parts = urllib.parse.urlsplit(url)
            parts.port  # noqa: B018  (raises ValueError for a port like ':abc' or ':99999')
        except ValueError:
            parts = None
        if parts is None or not parts.hostname:
            raise EngineError(
                f"The engine URL '{url}' is not a valid address (it needs a host and a numeric port, like "
                f"http://127.0.0.1:8765); set it in the DiMo add-on preferences."
            )
        self.url = url
        self.token = (token or "").strip()
        self.timeout = timeout

    # -- transport ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _open(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str | None = None,
        timeout: float | None = None,
    ) -> Iterator:
        """The engine's open response to one request; a failure then or while the block reads it is an EngineError."""
        timeout = timeout or self.timeout
        request = urllib.request.Request(self.url + path, data=body, method=method)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        if content_type:
            request.add_header("Content-Type", content_type)
        too_slow = (f"The engine at {self.url} did not answer {method} {path} within {timeout:g} s; "
                    "it may be busy or stuck, try again or restart it.")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                yield response
        except urllib.error.HTTPError as error:
            raise EngineError(self._http_error_sentence(error, method, path)) from None
        except (socket.timeout, TimeoutError):
            raise EngineError(too_slow) from None
        except urllib.error.URLError as error:
            reason = error.reason
            if isinstance(reason, (socket.timeout, TimeoutError)):
                raise EngineError(too_slow) from None
            raise EngineError(
                f"Cannot reach the engine at {self.url} ({reason}); start it or check the URL in the add-on preferences."
            ) from None
        except (ConnectionError, OSError) as error:
            raise EngineError(
                f"Lost the connection to the engine at {self.url} ({error}); start it or check the URL in the add-on preferences."
            ) from None

    def _request(self, method: str, path: str, **kwargs) -> bytes:
        with self._open(method, path, **kwargs) as response:
            return response.read()

    def _http_error_sentence(self, error: urllib.error.HTTPError, method: str, path: str) -> str:
        detail = ""
        try:
            payload = json.loads(error.read().decode("utf-8") or "{}")
            detail = payload.get("detail", "") if isinstance(payload, dict) else ""
            if isinstance(detail, list):  # FastAPI validation errors are a list of dicts
                detail = "; ".join(str(item.get("msg", item)) if isinstance(item, dict) else str(item) for item in detail)
        except (ValueError, OSError, AttributeError):
            pass
        if error.code == 401 or error.code == 403:
            return "The engine refused the token; copy the token from the engine's token file into the add-on preferences."
        if error.code in (404, 405) and path in _ENGINE_ROUTES:
            return self._not_an_engine(f"it answers {method} {path} with {error.code} {error.reason}")
        if detail:
            return as_sentence(detail)
        return f"The engine answered {error.code} {error.reason} to {method} {path}."

    def _not_an_engine(self, why: str) -> str:
        return (f"The server at {self.url} answers but is not a DiMo engine ({why}); check the URL and port in the "
                f"add-on preferences (dimo serve prints its URL).")

    def _json(self, method: str, path: str, **kwargs) -> dict:
        raw = self._request(method, path, **kwargs)
        try:
            data = json.loads(raw.decode("utf-8"))
        except ValueError:
            if path in _ENGINE_ROUTES:
                raise EngineError(self._not_an_engine(f"its answer to {method} {path} is not JSON")) from None
            raise EngineError(f"The engine at {self.url} sent something that is not JSON for {method} {path}; is the URL a DiMo engine?") from None
        if not isinstance(data, dict) or not all(key in data for key in _ENGINE_ROUTES.get(path, ())):
            if path in _ENGINE_ROUTES:
                raise EngineError(self._not_an_engine(f"its answer to {method} {path} lacks a DiMo engine's fields"))
            raise EngineError(f"The engine at {self.url} sent an unexpected answer to {method} {path}; is the URL a DiMo engine?")
        return data

    # -- API -------------------------------------------------------------------------------------

    def health(self) -> dict:
        return self._json(api.HEALTH.method, api.HEALTH.path())

    def info(self) -> dict:
        return self._json(api.INFO.method, api.INFO.path())

    def submit_job(
        self,
        reference: Path,
        cameras: list[Path],
        driving: Path | None = None,
        motion: Path | None = None,
        reference_camera: Path | None = None,
        settings: dict | None = None,
    ) -> str:
        """Upload one job; returns its id."""
        if (driving is None) == (motion is None):
            raise EngineError("Give either a driving video or a motion file, not both or neither.")
        files: list[tuple[str, Path]] = [(api.UPLOAD_REFERENCE, Path(reference))]
        files += [(api.UPLOAD_DRIVING, Path(driving))] if driving is not None else [(api.UPLOAD_MOTION, Path(motion))]
        files += [(api.UPLOAD_CAMERAS, Path(path)) for path in cameras]
        if reference_camera is not None:
            files.append((api.UPLOAD_REFERENCE_CAMERA, Path(reference_camera)))
        for role, path in files:
            if not path.is_file():
                raise EngineError(f"The {role.replace('_', ' ')} file {path} does not exist; choose an existing file.")
        fields = {api.FORM_SETTINGS: json.dumps(settings)} if settings else {}
        body, content_type = _multipart_body(fields, files)
        data = self._json(api.CREATE_JOB.method, api.CREATE_JOB.path(), body=body, content_type=content_type, timeout=UPLOAD_TIMEOUT_S)
        if "job_id" not in data:
            raise EngineError("The engine accepted the job but sent no job id; update the engine.")
        return str(data["job_id"])

    def job_status(self, job_id: str) -> JobStatus:
        return JobStatus.from_dict(self._json(api.JOB.method, api.JOB.path(job_id=job_id)))

    def job_events(self, job_id: str) -> Iterator[JobStatus | None]:
        """The job's statuses from its event stream as they happen, None at each heartbeat; read line by line in
        the calling (worker) thread, so a read waits at most a heartbeat or the client's timeout."""
        route = api.JOB_EVENTS
        path = route.path(job_id=job_id)
        with self._open(route.method, path, timeout=max(self.timeout, 3 * api.HEARTBEAT_S)) as response:
            if not (response.headers.get("Content-Type") or "").startswith(api.EVENTS_MEDIA_TYPE):
                raise EngineError(f"The engine answered {route.method} {path} with no event stream; update the engine.")
            lines = (line.decode("utf-8", "replace") for line in iter(response.readline, b""))
            for event in api.parse_events(lines):
                if event is None:
                    yield None
                elif event[0] == api.STATUS_EVENT:
                    try:
                        data = json.loads(event[1])
                    except ValueError:
                        raise EngineError(f"The engine sent a status event that is not JSON on {path}; update the engine.") from None
                    yield JobStatus.from_dict(data)

    def follow_job(self, job_id: str) -> Iterator[JobStatus | None]:
        """The job's statuses until it ends: from its event stream, or, where the engine has none or the stream
        breaks, by asking every STATUS_POLL_S. None means no news (a heartbeat, a failed request), so the caller
        can look at its cancel flag; an EngineError once MAX_POLL_FAILURES requests in a row have failed."""
        try:
            for status in self.job_events(job_id):
                yield status
                if status is not None and status.finished:
                    return
        except EngineError:
            pass  # no stream, or one cut short: ask instead
        failures = 0
        while True:
            try:
                status = self.job_status(job_id)
                failures = 0
            except EngineError:
                failures += 1
                if failures >= MAX_POLL_FAILURES:
                    raise
                status = None
            yield status
            if status is not None and status.finished:
                return
            time.sleep(STATUS_POLL_S)

    def cancel_job(self, job_id: str) -> None:
        self._request(api.CANCEL_JOB.method, api.CANCEL_JOB.path(job_id=job_id), body=b"")

    def delete_job(self, job_id: str) -> None:
        self._request(api.DELETE_JOB.method, api.DELETE_JOB.path(job_id=job_id))

    def frame_names(self, job_id: str) -> list[list[str]]:
        """Names of the frames written so far, one list per camera."""
        data = self._json(api.FRAMES.method, api.FRAMES.path(job_id=job_id))
        return [list(map(str, names)) for names in data.get("cameras", [])]

    def download_frame(self, job_id: str, camera_index: int, name: str, destination: Path) -> Path:
        """Fetch one PNG into `destination` (written under a temporary name, then renamed)."""
        data = self._request(api.FRAME.method, api.FRAME.path(job_id=job_id, camera_index=int(camera_index), name=name))
        return write_bytes_atomic(destination, data)
