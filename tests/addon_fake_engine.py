"""A stand-in for `dimo serve` in the add-on tests: the HTTP API of docs/formats.md on 127.0.0.1, in a
thread, with configurable delays, failures and job length, recording what it received."""

from __future__ import annotations

import email.parser
import email.policy
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import imageio.v3 as iio
import numpy as np

from blender_addon.core import api_schema as api


def png_bytes(value: int, size: int = 16) -> bytes:
    buffer = io.BytesIO()
    iio.imwrite(buffer, np.full((size, size, 3), value, dtype=np.uint8), extension=".png")
    return buffer.getvalue()


class FakeEngine:
    """Each job advances one denoising step per status poll or status event, then is done with `num_frames`
    per camera. With `events=False` it has no event stream (an older engine), so clients must poll."""

    def __init__(self, token="secret", num_frames=5, steps=3, delay_s=0.0, submit_error=None, fail_job=None,
                 events=True, event_interval_s=0.02):
        self.token = token
        self.num_frames = num_frames
        self.steps = steps
        self.delay_s = delay_s
        self.submit_error = submit_error  # (status, detail) answered to POST /v1/jobs
        self.fail_job = fail_job  # error sentence of a job that fails
        self.events = events
        self.event_interval_s = event_interval_s
        self.jobs: dict[str, dict] = {}
        self.uploads: list[dict] = []
        self.cancelled: list[str] = []
        self.status_polls: list[str] = []  # job ids of GET /v1/jobs/{job_id}
        self.streamed: list[str] = []  # job ids whose event stream was opened
        self.frames = [png_bytes(40 * i % 256) for i in range(num_frames)]
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._server.shutdown()
        self._server.server_close()

    def _status(self, job_id: str) -> dict:
        with self._lock:
            job = self.jobs[job_id]
            if job["status"] in (api.QUEUED, api.RUNNING):
                job["step"] += 1
                job["status"] = api.RUNNING
                if job["step"] > self.steps:
                    job["status"] = api.FAILED if self.fail_job else api.DONE
                    job["error"] = self.fail_job
            step = min(job["step"], self.steps)
            progress = api.Progress(stage=api.STAGE_GENERATING, step=step, total_steps=self.steps,
                                    frames_total=self.num_frames, fraction=step / self.steps)
            return api.JobStatus(job_id, job["status"], progress, job.get("error"), job["cameras"]).to_dict()

    def _handler(self):
        engine = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status, payload=None, body=None, content_type="application/json"):
                body = body if body is not None else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _authorised(self) -> bool:
                if self.headers.get("Authorization") != f"Bearer {engine.token}":
                    self._send(401, {"detail": "Missing or wrong token."})
                    return False
                return True

            def _stream(self, job_id):
                engine.streamed.append(job_id)
                self.send_response(200)
                self.send_header("Content-Type", api.EVENTS_MEDIA_TYPE)
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()  # no length: the stream ends when the connection closes
                self.close_connection = True
                while True:
                    status = engine._status(job_id)
                    self.wfile.write((api.format_event(api.STATUS_EVENT, status) + api.HEARTBEAT).encode())
                    self.wfile.flush()
                    if status["status"] in api.TERMINAL_STATUSES:
                        return
                    time.sleep(engine.event_interval_s)

            def _route(self):
                """(route, path parameters) for a known route and job, else None with a 401 or 404 sent."""
                found = api.match_route(self.command, self.path)
                if found is None:
                    return self._send(404, {"detail": f"No such path {self.path}."})
                route, parameters = found
                if route not in api.OPEN_ROUTES and not self._authorised():
                    return None
                if "job_id" in parameters and parameters["job_id"] not in engine.jobs:
                    return self._send(404, {"detail": f"No job {parameters['job_id']}."})
                if route is api.JOB_EVENTS and not engine.events:
                    return self._send(404, {"detail": "Not Found"})
                return found

            def do_GET(self):
                time.sleep(engine.delay_s)
                found = self._route()
                if found is None:
                    return None
                route, parameters = found
                job_id = parameters.get("job_id")
                if route is api.HEALTH:
                    return self._send(200, {"status": api.HEALTH_OK, "version": "0.1.0"})
                if route is api.INFO:
                    return self._send(200, {"model": "fake-tiny", "device": "cpu", "dtype": "float32", "version": "0.1.0",
                                            "num_frames": engine.num_frames, "fps": 12.0, "width": 64, "height": 64})
                if route is api.JOB:
                    engine.status_polls.append(job_id)
                    return self._send(200, engine._status(job_id))
                if route is api.JOB_EVENTS:
                    return self._stream(job_id)
                if route is api.FRAMES:
                    names = [f"{i:04d}.png" for i in range(engine.num_frames)]
                    done = engine.jobs[job_id]["status"] == api.DONE
                    return self._send(200, {"cameras": [names if done else [] for _ in range(engine.jobs[job_id]["cameras"])]})
                index = int(parameters["name"].split(".")[0])  # api.FRAME
                return self._send(200, body=engine.frames[index], content_type="image/png")

            def do_POST(self):
                time.sleep(engine.delay_s)
                found = self._route()
                if found is None:
                    return None
                route, parameters = found
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                if route is api.CREATE_JOB:
                    if engine.submit_error:
                        return self._send(engine.submit_error[0], {"detail": engine.submit_error[1]})
                    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                        f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + body
                    )
                    upload: dict[str, list] = {}
                    for part in message.iter_parts():
                        name = part.get_param("name", header="content-disposition")
                        upload.setdefault(name, []).append((part.get_filename(), part.get_payload(decode=True)))
                    engine.uploads.append(upload)
                    job_id = f"job{len(engine.jobs) + 1}"
                    engine.jobs[job_id] = {"status": api.QUEUED, "step": 0, "cameras": len(upload.get(api.UPLOAD_CAMERAS, []))}
                    return self._send(202, {"job_id": job_id, "status": api.QUEUED})
                job_id = parameters["job_id"]  # api.CANCEL_JOB
                engine.cancelled.append(job_id)
                with engine._lock:
                    if engine.jobs[job_id]["status"] in (api.QUEUED, api.RUNNING):
                        engine.jobs[job_id]["status"] = api.CANCELLED
                return self._send(200, engine._status(job_id))

            def do_DELETE(self):
                found = self._route()
                if found is None:
                    return None
                job_id = found[1]["job_id"]
                engine.jobs.pop(job_id, None)
                return self._send(200, {"job_id": job_id, "deleted": True})

        return Handler
