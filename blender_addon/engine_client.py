"""HTTP client of the DiMo engine service (docs/formats.md, "Engine service"), standard library only.

Every failure becomes an `EngineError` whose message is one sentence an artist can act on;
every call has a timeout, so a hung engine can never hang the caller.
"""

from __future__ import annotations

import json
import mimetypes
import socket
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .core.atomic_io import write_bytes_atomic

DEFAULT_TIMEOUT_S = 10.0
# Uploads carry a video, so they may take longer than a status poll.
UPLOAD_TIMEOUT_S = 120.0


class EngineError(Exception):
    """The engine could not be reached or refused a request; the message is one sentence for the artist."""


# Routes every DiMo engine answers; a server answering them with "not found" is something else.
_ENGINE_ROUTES = {"/v1/health": ("status", "version"), "/v1/info": ("model", "num_frames", "fps")}


def as_sentence(text: str) -> str:
    """The engine's messages are lower-case clauses; the panel shows them as sentences."""
    text = " ".join(str(text).split())
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


@dataclass
class JobStatus:
    """One status object of `GET /v1/jobs/{id}`."""

    job_id: str
    status: str
    progress: dict = field(default_factory=dict)
    error: str | None = None
    cameras: int = 1

    @property
    def finished(self) -> bool:
        return self.status in ("done", "failed", "cancelled")

    @property
    def fraction(self) -> float:
        value = self.progress.get("fraction")
        return float(value) if isinstance(value, (int, float)) else 0.0

    @classmethod
    def from_dict(cls, data: dict) -> "JobStatus":
        return cls(
            job_id=str(data.get("job_id", "")),
            status=str(data.get("status", "unknown")),
            progress=dict(data.get("progress") or {}),
            error=data.get("error"),
            cameras=int(data.get("cameras") or 1),
        )


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

    def _request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str | None = None,
        timeout: float | None = None,
    ) -> bytes:
        request = urllib.request.Request(self.url + path, data=body, method=method)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        if content_type:
            request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as response:
                return response.read()
        except urllib.error.HTTPError as error:
            raise EngineError(self._http_error_sentence(error, method, path)) from None
        except (socket.timeout, TimeoutError):
            raise EngineError(
                f"The engine at {self.url} did not answer {method} {path} within {timeout or self.timeout:g} s; "
                "it may be busy or stuck, try again or restart it."
            ) from None
        except urllib.error.URLError as error:
            reason = error.reason
            if isinstance(reason, (socket.timeout, TimeoutError)):
                raise EngineError(
                    f"The engine at {self.url} did not answer {method} {path} within {timeout or self.timeout:g} s; "
                    "it may be busy or stuck, try again or restart it."
                ) from None
            raise EngineError(
                f"Cannot reach the engine at {self.url} ({reason}); start it or check the URL in the add-on preferences."
            ) from None
        except (ConnectionError, OSError) as error:
            raise EngineError(
                f"Lost the connection to the engine at {self.url} ({error}); start it or check the URL in the add-on preferences."
            ) from None

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
        return self._json("GET", "/v1/health")

    def info(self) -> dict:
        return self._json("GET", "/v1/info")

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
        files: list[tuple[str, Path]] = [("reference", Path(reference))]
        files += [("driving", Path(driving))] if driving is not None else [("motion", Path(motion))]
        files += [("cameras", Path(path)) for path in cameras]
        if reference_camera is not None:
            files.append(("reference_camera", Path(reference_camera)))
        for role, path in files:
            if not path.is_file():
                raise EngineError(f"The {role.replace('_', ' ')} file {path} does not exist; choose an existing file.")
        fields = {"settings": json.dumps(settings)} if settings else {}
        body, content_type = _multipart_body(fields, files)
        data = self._json("POST", "/v1/jobs", body=body, content_type=content_type, timeout=UPLOAD_TIMEOUT_S)
        if "job_id" not in data:
            raise EngineError("The engine accepted the job but sent no job id; update the engine.")
        return str(data["job_id"])

    def job_status(self, job_id: str) -> JobStatus:
        return JobStatus.from_dict(self._json("GET", f"/v1/jobs/{urllib.parse.quote(job_id)}"))

    def cancel_job(self, job_id: str) -> None:
        self._request("POST", f"/v1/jobs/{urllib.parse.quote(job_id)}/cancel", body=b"")

    def delete_job(self, job_id: str) -> None:
        self._request("DELETE", f"/v1/jobs/{urllib.parse.quote(job_id)}")

    def frame_names(self, job_id: str) -> list[list[str]]:
        """Names of the frames written so far, one list per camera."""
        data = self._json("GET", f"/v1/jobs/{urllib.parse.quote(job_id)}/frames")
        return [list(map(str, names)) for names in data.get("cameras", [])]

    def download_frame(self, job_id: str, camera_index: int, name: str, destination: Path) -> Path:
        """Fetch one PNG into `destination` (written under a temporary name, then renamed)."""
        data = self._request(
            "GET", f"/v1/jobs/{urllib.parse.quote(job_id)}/frames/{int(camera_index)}/{urllib.parse.quote(name)}"
        )
        return write_bytes_atomic(destination, data)
