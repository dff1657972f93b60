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


def png_bytes(value: int, size: int = 16) -> bytes:
    buffer = io.BytesIO()
    iio.imwrite(buffer, np.full((size, size, 3), value, dtype=np.uint8), extension=".png")
    return buffer.getvalue()


class FakeEngine:
    """Each job advances one denoising step per status poll, then is done with `num_frames` per camera."""

    def __init__(self, token="secret", num_frames=5, steps=3, delay_s=0.0, submit_error=None, fail_job=None):
        self.token = token
        self.num_frames = num_frames
        self.steps = steps
        self.delay_s = delay_s
        self.submit_error = submit_error  # (status, detail) answered to POST /v1/jobs
        self.fail_job = fail_job  # error sentence of a job that fails
        self.jobs: dict[str, dict] = {}
        self.uploads: list[dict] = []
        self.cancelled: list[str] = []
        self.frames = [png_bytes(40 * i % 256) for i in range(num_frames)]
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
        job = self.jobs[job_id]
        if job["status"] in ("queued", "running"):
            job["step"] += 1
            job["status"] = "running"
            if job["step"] > self.steps:
                job["status"] = "failed" if self.fail_job else "done"
                job["error"] = self.fail_job
        step = min(job["step"], self.steps)
        return {
            "job_id": job_id, "status": job["status"], "error": job.get("error"), "cameras": job["cameras"],
            "progress": {"stage": "denoising", "step": step, "total_steps": self.steps, "frames_done": 0,
                         "frames_total": self.num_frames, "fraction": step / self.steps, "eta_s": None},
        }

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

            def do_GET(self):
                time.sleep(engine.delay_s)
                parts = self.path.strip("/").split("/")
                if parts == ["v1", "health"]:
                    return self._send(200, {"status": "ok", "version": "0.1.0"})
                if not self._authorised():
                    return None
                if parts == ["v1", "info"]:
                    return self._send(200, {"model": "fake-tiny", "device": "cpu", "dtype": "float32", "version": "0.1.0",
                                            "num_frames": engine.num_frames, "fps": 12.0, "width": 64, "height": 64})
                if len(parts) >= 3 and parts[:2] == ["v1", "jobs"] and parts[2] in engine.jobs:
                    job_id = parts[2]
                    if len(parts) == 3:
                        return self._send(200, engine._status(job_id))
                    if parts[3] == "frames" and len(parts) == 4:
                        names = [f"{i:04d}.png" for i in range(engine.num_frames)]
                        done = engine.jobs[job_id]["status"] == "done"
                        return self._send(200, {"cameras": [names if done else [] for _ in range(engine.jobs[job_id]["cameras"])]})
                    if parts[3] == "frames" and len(parts) == 6:
                        index = int(parts[5].split(".")[0])
                        return self._send(200, body=engine.frames[index], content_type="image/png")
                return self._send(404, {"detail": f"No such job or path {self.path}."})

            def do_POST(self):
                time.sleep(engine.delay_s)
                if not self._authorised():
                    return None
                parts = self.path.strip("/").split("/")
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                if parts == ["v1", "jobs"]:
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
                    engine.jobs[job_id] = {"status": "queued", "step": 0, "cameras": len(upload.get("cameras", []))}
                    return self._send(202, {"job_id": job_id, "status": "queued"})
                if len(parts) == 4 and parts[3] == "cancel" and parts[2] in engine.jobs:
                    engine.cancelled.append(parts[2])
                    if engine.jobs[parts[2]]["status"] in ("queued", "running"):
                        engine.jobs[parts[2]]["status"] = "cancelled"
                    return self._send(200, engine._status(parts[2]))
                return self._send(404, {"detail": "No such path."})

            def do_DELETE(self):
                if not self._authorised():
                    return None
                parts = self.path.strip("/").split("/")
                engine.jobs.pop(parts[2], None)
                return self._send(200, {"deleted": True})

        return Handler
