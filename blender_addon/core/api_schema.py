"""The engine service's HTTP contract (docs/formats.md, "Engine service") in one place for the three
sides that speak it: the service's FastAPI routes, the add-on's client and the tests' fake engine.

Plain Python, since the add-on may import nothing else: the routes, the upload fields of a job, the
job statuses and progress object, the event stream's wire format and the ranges of the settings.
The service builds its pydantic models from these.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

API_PREFIX = "/v1/"


@dataclass(frozen=True)
class Route:
    """One method and path template, `{name}` for a path parameter (FastAPI's syntax)."""

    method: str
    template: str

    @property
    def parameters(self) -> tuple[str, ...]:
        return tuple(re.findall(r"{(\w+)}", self.template))

    def path(self, **parameters) -> str:
        """The template filled in, each value quoted: `JOB.path(job_id="abc")` is `/v1/jobs/abc`."""
        if set(parameters) != set(self.parameters):
            raise TypeError(f"{self.method} {self.template} takes {list(self.parameters)}, got {sorted(parameters)}")
        return self.template.format(**{name: urllib.parse.quote(str(value), safe="") for name, value in parameters.items()})

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """The path parameters when `method path` is this route (query string ignored), else None."""
        if method.upper() != self.method:
            return None
        pattern = "".join(f"(?P<{part[1:-1]}>[^/]+)" if part.startswith("{") else re.escape(part)
                          for part in re.split(r"({\w+})", self.template))
        found = re.fullmatch(pattern, urllib.parse.urlsplit(path).path)
        return {name: urllib.parse.unquote(value) for name, value in found.groupdict().items()} if found else None


HEALTH = Route("GET", "/v1/health")
INFO = Route("GET", "/v1/info")
CREATE_JOB = Route("POST", "/v1/jobs")
JOB = Route("GET", "/v1/jobs/{job_id}")
JOB_EVENTS = Route("GET", "/v1/jobs/{job_id}/events")
CANCEL_JOB = Route("POST", "/v1/jobs/{job_id}/cancel")
FRAMES = Route("GET", "/v1/jobs/{job_id}/frames")
FRAME = Route("GET", "/v1/jobs/{job_id}/frames/{camera_index}/{name}")
DELETE_JOB = Route("DELETE", "/v1/jobs/{job_id}")
ROUTES = (HEALTH, INFO, CREATE_JOB, JOB, JOB_EVENTS, CANCEL_JOB, FRAMES, FRAME, DELETE_JOB)
OPEN_ROUTES = (HEALTH,)  # every other route needs "Authorization: Bearer <token>"


def match_route(method: str, path: str) -> tuple[Route, dict[str, str]] | None:
    """The route `method path` asks for, with its path parameters; None for anything else."""
    for route in ROUTES:
        parameters = route.match(method, path)
        if parameters is not None:
            return route, parameters
    return None


# Fields by which an answer shows that the server is a DiMo engine, not some other server on the port.
REQUIRED_FIELDS = {HEALTH: ("status", "version"), INFO: ("model", "num_frames", "fps")}
HEALTH_OK = "ok"
INFO_FIELDS = ("model", "device", "dtype", "version", "num_frames", "fps", "width", "height", "limits")

# The multipart fields of POST /v1/jobs: files, then the settings' JSON text.
UPLOAD_REFERENCE = "reference"
UPLOAD_CAMERAS = "cameras"  # one or more
UPLOAD_DRIVING = "driving"  # a video or a zip of images; exactly one of driving and motion
UPLOAD_MOTION = "motion"
UPLOAD_REFERENCE_CAMERA = "reference_camera"
FORM_SETTINGS = "settings"

# Job statuses, and the ones a job never leaves.
QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
JOB_STATUSES = (QUEUED, RUNNING, DONE, FAILED, CANCELLED)
TERMINAL_STATUSES = (DONE, FAILED, CANCELLED)

# Progress stages of a job (a stage, unlike a status, says what the engine is doing).
STAGE_QUEUED, STAGE_ENCODING, STAGE_GENERATING, STAGE_DONE = "queued", "encoding", "generating", "done"
PROGRESS_STAGES = (STAGE_QUEUED, STAGE_ENCODING, STAGE_GENERATING, STAGE_DONE)


@dataclass
class Progress:
    """A job's progress: the engine's running count and the `progress` object of every status."""

    stage: str = STAGE_QUEUED
    step: int = 0
    total_steps: int = 0
    frames_done: int = 0
    frames_total: int = 0
    fraction: float = 0.0
    eta_s: float | None = None

    @classmethod
    def from_dict(cls, data: object) -> "Progress":
        """Read leniently (a client must not fail on a newer engine's extra or missing fields)."""
        data = data if isinstance(data, dict) else {}

        def number(name, kind, default):
            value = data.get(name)
            return kind(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) else default

        return cls(stage=str(data.get("stage") or STAGE_QUEUED), step=number("step", int, 0),
                   total_steps=number("total_steps", int, 0), frames_done=number("frames_done", int, 0),
                   frames_total=number("frames_total", int, 0), fraction=number("fraction", float, 0.0),
                   eta_s=number("eta_s", float, None))


@dataclass
class JobStatus:
    """The status object of `GET /v1/jobs/{job_id}`, of the cancel answer and of every status event."""

    job_id: str
    status: str
    progress: Progress = field(default_factory=Progress)
    error: str | None = None
    cameras: int = 1

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def fraction(self) -> float:
        return self.progress.fraction

    @property
    def stage(self) -> str:
        """What the engine is doing: the progress stage, or the status where it names none."""
        return self.progress.stage or self.status

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: object) -> "JobStatus":
        data = data if isinstance(data, dict) else {}
        cameras = data.get("cameras")
        error = data.get("error")
        return cls(job_id=str(data.get("job_id", "")), status=str(data.get("status", "unknown")),
                   progress=Progress.from_dict(data.get("progress")), error=None if error is None else str(error),
                   cameras=cameras if isinstance(cameras, int) and not isinstance(cameras, bool) and cameras > 0 else 1)


# The event stream of GET /v1/jobs/{job_id}/events: one `status` event (data: a status object) at every
# change, until the job ends; a comment line after HEARTBEAT_S without one, so that a client's read
# timeout only fires when the engine is really gone.
EVENTS_MEDIA_TYPE = "text/event-stream"
STATUS_EVENT = "status"
HEARTBEAT_S = 1.0
HEARTBEAT = ": still working\n\n"


def format_event(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


def parse_events(lines: Iterable[str]) -> Iterator[tuple[str, str] | None]:
    """Server-sent events from a stream's lines: (event, data) at each blank line that ends one, None for
    each comment (a heartbeat, so a reader can look at the clock and its cancel flag)."""
    event, data = "message", []
    for line in lines:
        line = line.rstrip("\r\n")
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith(":"):
            yield None
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)


@dataclass(frozen=True)
class SettingRange:
    """The values one field of a job's settings may take."""

    kind: type  # int or float
    low: int | float
    high: int | float
    requirement: str  # "must be ..." for the one-sentence error


SETTINGS = {
    "num_inference_steps": SettingRange(int, 1, 200, "an integer from 1 to 200"),
    "motion_guidance_scale": SettingRange(float, 0.0, 30.0, "a number from 0 to 30"),
    "seed": SettingRange(int, 0, 2**63 - 1, "a non-negative integer"),
    # metres, crown to floor; unset: the body as tall as the driving video shows it (a typical body's height)
    "character_height": SettingRange(float, 0.3, 3.0, "a height in metres from 0.3 to 3"),
}
SETTINGS_EXAMPLE = '{"num_inference_steps": 20, "seed": 0}'
