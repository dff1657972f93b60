"""The engine service: auth, job lifecycle, progress, cancel, cache, bad input as 4xx, a real
`dimo serve` process on loopback, and schemathesis against the OpenAPI schema (no 5xx)."""

import asyncio
import dataclasses
import io
import json
import os
import subprocess
import sys
import time
import zipfile

import httpx
import numpy as np
import pytest
import schemathesis
import torch
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from PIL import Image

from blender_addon.core import api_schema as api
from blender_addon.core.camera_rigs import static_view
from dimo_engine.camera import camera_path_to_dict
from dimo_engine.pipelines import create_random_pipeline
from dimo_engine.server import JobRunner, Limits, create_app
from dimo_engine.video_io import write_video
from tests.pipeline_doubles import CountingPipeline

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def job_inputs(folder, video_height: int, camera_width: int, camera_height: int) -> dict:
    """A job's files: a 12-frame driving video of a bar moving right (`video_height` x 48), a flat reference PNG
    and a static 12-frame camera path of `camera_width` x `camera_height`."""
    frames = np.full((12, video_height, 48, 3), 25, np.uint8)
    for index in range(12):
        frames[index, 8:video_height - 4, 10 + index : 22 + index] = (220, 180, 60)
    write_video(frames, folder / "drive.mp4", fps=12)
    buffer = io.BytesIO()
    Image.fromarray(np.full((40, 40, 3), 140, np.uint8)).save(buffer, format="PNG")
    camera = camera_path_to_dict(static_view(30.0, 10.0, 12, 12.0, camera_width, camera_height))
    return {"driving": (folder / "drive.mp4").read_bytes(), "reference": buffer.getvalue(), "camera": camera}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return {**job_inputs(tmp_path_factory.mktemp("inputs"), 40, 64, 64),
            "still": camera_path_to_dict(static_view(0.0, 0.0, 1, 12.0, 64, 64))}


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    pipe = CountingPipeline(create_random_pipeline(seed=0, preset="tiny"))
    runner = JobRunner(pipe, tmp_path_factory.mktemp("work"), limits=Limits(max_upload_bytes=2_000_000))
    with TestClient(create_app(runner, TOKEN)) as client:
        yield client, runner, pipe
    runner.shutdown()


def job_files(inputs, cameras=None, driving=None, reference=None, settings=None, **extra):
    cameras = cameras if cameras is not None else [inputs["camera"]]
    files = [("reference", ("ref.png", reference if reference is not None else inputs["reference"], "image/png"))]
    files += [("cameras", (f"cam{i}.json", json.dumps(c).encode(), "application/json")) for i, c in enumerate(cameras)]
    files.append(("driving", ("clip.mp4", driving if driving is not None else inputs["driving"], "video/mp4")))
    data = {"settings": json.dumps(settings if settings is not None else {"num_inference_steps": 2, "seed": 1})}
    for name, value in extra.items():
        files.append((name, value))
    return {"files": files, "data": data}


def wait_for(client, job_id, statuses=("done", "failed", "cancelled"), timeout=60.0, condition=None):
    """Poll a job until its status is in `statuses` (or `condition(status)`); returns every status seen."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(f"/v1/jobs/{job_id}", headers=AUTH).json()
        seen.append(status)
        if status["status"] in statuses or (condition is not None and condition(status)):
            return seen
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {seen[-1]} after {timeout} s")


def test_health_is_open_and_everything_else_needs_the_token(service):
    client, _, _ = service
    assert client.get("/v1/health").json()["status"] == "ok"
    assert client.get("/v1/info").status_code == 401
    assert client.get("/v1/info", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/v1/jobs/abc", headers={"Authorization": "Bearer wrong"}).status_code == 401
    info = client.get("/v1/info", headers=AUTH).json()
    assert (info["num_frames"], info["fps"], info["width"], info["height"]) == (9, 12.0, 32, 32)
    assert info["limits"]["max_upload_bytes"] == 2_000_000


def test_job_lifecycle_progress_frames_cache_and_delete(service, inputs):
    client, runner, pipe = service
    encodes_before = pipe.encode_calls
    answer = client.post("/v1/jobs", headers=AUTH, **job_files(inputs, cameras=[inputs["camera"], inputs["still"]]))
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["job_id"]
    assert answer.json()["status"] == "queued" and len(job_id) >= 16
    seen = wait_for(client, job_id)
    final = seen[-1]
    assert final["status"] == "done", final
    assert final["cameras"] == 2 and final["progress"]["frames_done"] == final["progress"]["frames_total"] == 24
    fractions = [s["progress"]["fraction"] for s in seen]
    steps = [s["progress"]["step"] for s in seen]
    assert fractions == sorted(fractions) and steps == sorted(steps) and fractions[-1] == 1.0
    first_encodes = pipe.encode_calls - encodes_before
    assert first_encodes >= 1  # 12 frames at 12 fps in windows of 9: encoded in overlapping windows

    frames = client.get(f"/v1/jobs/{job_id}/frames", headers=AUTH).json()["cameras"]
    assert frames == [[f"{i:04d}.png" for i in range(12)]] * 2
    png = client.get(f"/v1/jobs/{job_id}/frames/1/0011.png", headers=AUTH)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert np.asarray(Image.open(io.BytesIO(png.content))).shape == (32, 32, 3)
    for bad in ("../../inputs/reference.png", "%2e%2e%2finputs%2freference.png", "0000.PNG"):
        assert client.get(f"/v1/jobs/{job_id}/frames/0/{bad}", headers=AUTH).status_code == 404
    assert client.get(f"/v1/jobs/{job_id}/frames/2/0000.png", headers=AUTH).status_code == 404

    # Same driving video again: the motion comes from the cache, the encoder is not run.
    second = client.post("/v1/jobs", headers=AUTH, **job_files(inputs)).json()["job_id"]
    assert wait_for(client, second)[-1]["status"] == "done"
    assert pipe.encode_calls - encodes_before == first_encodes
    assert runner.cache.hits >= 1

    folder = runner.get(job_id).folder
    assert client.delete(f"/v1/jobs/{job_id}", headers=AUTH).status_code == 200
    assert client.get(f"/v1/jobs/{job_id}", headers=AUTH).status_code == 404
    assert not folder.exists()


def _ffmpeg_reader_spy(monkeypatch):
    """Every ffmpeg reader started, with its options, and the frames pulled out of each after the header."""
    from dimo_engine import video_io

    started, pulled = [], []
    original = video_io.imageio_ffmpeg.read_frames

    def spy(path, *args, **kwargs):
        started.append(kwargs)
        pulled.append(0)
        reader = original(path, *args, **kwargs)
        yield next(reader)
        try:
            for buffer in reader:
                pulled[-1] += 1
                yield buffer
        finally:
            reader.close()

    monkeypatch.setattr(video_io.imageio_ffmpeg, "read_frames", spy)
    return started, pulled


def test_a_job_decodes_its_driving_video_once_at_the_encoders_size(service, inputs, tmp_path, monkeypatch):
    from dimo_engine import driving
    from dimo_engine.server import jobs

    client, runner, pipe = service
    frames = np.full((48, 360, 640, 3), 30, np.uint8)  # 2 s of a 640x360 clip at 24 fps, new to the cache
    for index in range(48):
        frames[index, 60:300, 100 + 4 * index : 220 + 4 * index] = (200, 160, 90)
    write_video(frames, tmp_path / "wide.mp4", fps=24)
    started, pulled = _ffmpeg_reader_spy(monkeypatch)
    encoded = []
    original_encode = jobs.encode_driving
    monkeypatch.setattr(jobs, "encode_driving", lambda pipe, clip, fps, **kw: encoded.append((clip.shape, fps))
                        or original_encode(pipe, clip, fps, **kw))
    request = job_files(inputs, cameras=[inputs["still"]], driving=(tmp_path / "wide.mp4").read_bytes())
    job_id = client.post("/v1/jobs", headers=AUTH, **request).json()["job_id"]
    assert wait_for(client, job_id)[-1]["status"] == "done"
    assert len(started) == 1, "the driving video was decoded more than once"
    assert str(driving.DRIVING_SIDE) in started[0]["output_params"][1]
    assert encoded == [((24, 288, 512, 3), 12.0)]
    assert client.get(f"/v1/jobs/{job_id}/frames", headers=AUTH).json()["cameras"] == [
        [f"{i:04d}.png" for i in range(24)]]


def test_a_clip_longer_than_a_job_is_refused_before_it_is_decoded(service, inputs, tmp_path, monkeypatch):
    client, runner, _ = service
    write_video(np.zeros((30, 16, 16, 3), np.uint8), tmp_path / "long.mp4", fps=12)  # 2.5 s
    monkeypatch.setattr(runner.limits, "max_motion_frames", 24)
    started, pulled = _ffmpeg_reader_spy(monkeypatch)
    answer = client.post("/v1/jobs", headers=AUTH,
                         **job_files(inputs, cameras=[inputs["still"]], driving=(tmp_path / "long.mp4").read_bytes()))
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    assert "upload 'driving' (clip.mp4) lasts 2.5 s" in detail and "trim it to at most 2 s" in detail, detail
    assert pulled == [0]


def test_cancel_stops_within_one_denoising_step(service, inputs):
    client, _, pipe = service
    pipe.step_delay = 0.25
    try:
        answer = client.post("/v1/jobs", headers=AUTH, **job_files(inputs, settings={"num_inference_steps": 40}))
        job_id = answer.json()["job_id"]
        first = wait_for(client, job_id, condition=lambda s: s["progress"]["step"] >= 1)[-1]
        first_at = time.monotonic()
        running = wait_for(client, job_id, condition=lambda s: s["progress"]["step"] >= first["progress"]["step"] + 2)[-1]
        # One denoising step as this machine runs it now: the reference the cancel is timed against.
        seconds_per_step = (time.monotonic() - first_at) / (running["progress"]["step"] - first["progress"]["step"])
        assert running["status"] == "running" and running["progress"]["stage"] == "generating"
        assert running["progress"]["eta_s"] > 0 and running["progress"]["total_steps"] == 80  # 40 steps x 2 windows
        cancelled_at = client.post(f"/v1/jobs/{job_id}/cancel", headers=AUTH).json()["progress"]["step"]
        started = time.monotonic()
        final = wait_for(client, job_id, timeout=10)[-1]
        assert final["status"] == "cancelled"
        assert final["progress"]["step"] <= cancelled_at + 1
        # The step in flight ends, then the job reports; far less than the 70-odd steps left.
        assert time.monotonic() - started < 4 * seconds_per_step
        assert final["progress"]["step"] < final["progress"]["total_steps"]
    finally:
        pipe.step_delay = 0.0


def test_a_failing_job_is_reported_and_the_service_goes_on(service, inputs):
    from safetensors.torch import save as save_tensors

    client, _, _ = service
    # A motion file of the right format but from another model (token width 7): fails inside the pipeline.
    foreign = save_tensors({"body": torch.zeros(1, 12, 2, 7), "hands": torch.zeros(1, 12, 2, 7)})
    files = job_files(inputs)
    files["files"] = [f for f in files["files"] if f[0] != "driving"] + [("motion", ("m.safetensors", foreign))]
    job_id = client.post("/v1/jobs", headers=AUTH, **files).json()["job_id"]
    final = wait_for(client, job_id)[-1]
    assert final["status"] == "failed" and final["error"]
    healthy = client.post("/v1/jobs", headers=AUTH, **job_files(inputs)).json()["job_id"]
    assert wait_for(client, healthy)[-1]["status"] == "done"


def _nan_camera(inputs):
    camera = json.loads(json.dumps(inputs["camera"]))
    camera["frames"][3]["world_to_camera"][0][0] = float("nan")
    return camera


def _sheared_camera(inputs):
    camera = json.loads(json.dumps(inputs["camera"]))
    camera["frames"][0]["world_to_camera"][0][1] += 0.3
    return camera


def _camera_behind(inputs):  # same camera centre, looking away from the character
    camera = json.loads(json.dumps(inputs["camera"]))
    for frame in camera["frames"]:
        for row in (0, 2):
            frame["world_to_camera"][row] = [-value for value in frame["world_to_camera"][row]]
    return camera


def _big_png():
    buffer = io.BytesIO()
    Image.new("RGB", (20000, 4)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("case, status, words", [
    ("text_as_mp4", 422, "cannot be decoded"),
    ("empty_video", 422, "empty"),
    ("nan_camera", 422, "non-finite"),
    ("non_rigid_camera", 422, "non-rigid"),
    ("camera_behind", 422, "behind the camera in every frame"),
    ("frame_mismatch", 422, "frames"),
    ("huge_reference", 422, "20000x4"),
    ("no_cameras", 422, "cameras"),
    ("bad_settings", 422, "num_inference_steps"),
    ("too_large", 413, "limit"),
    ("zip_traversal", 422, "no PNG/JPEG"),
])
def test_bad_input_is_a_4xx_with_one_sentence(service, inputs, case, status, words):
    client, runner, _ = service
    jobs_before = set(os.listdir(runner.jobs_dir))
    kwargs = {
        "text_as_mp4": dict(driving=b"this is text, not a video\n"),
        "empty_video": dict(driving=b""),
        "nan_camera": dict(cameras=[_nan_camera(inputs)]),
        "non_rigid_camera": dict(cameras=[_sheared_camera(inputs)]),
        "camera_behind": dict(cameras=[_camera_behind(inputs)]),
        "huge_reference": dict(reference=_big_png()),
        "bad_settings": dict(settings={"num_inference_steps": 0}),
        "too_large": dict(driving=b"\0" * 2_100_000),
    }.get(case, {})
    if case == "frame_mismatch":
        camera = json.loads(json.dumps(inputs["camera"]))
        camera["frames"] = camera["frames"][:7]
        kwargs = dict(cameras=[camera])
    request = job_files(inputs, **kwargs)
    if case == "no_cameras":
        request["files"] = [f for f in request["files"] if f[0] != "cameras"]
    if case == "zip_traversal":
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as bundle:
            bundle.writestr("../../evil.txt", "x")
        request["files"] = [f for f in request["files"] if f[0] != "driving"]
        request["files"].append(("driving", ("frames.zip", archive.getvalue(), "application/zip")))
    answer = client.post("/v1/jobs", headers=AUTH, **request)
    assert answer.status_code == status, answer.text
    detail = answer.json()["detail"]
    assert isinstance(detail, str) and words in detail and "\n" not in detail
    assert set(os.listdir(runner.jobs_dir)) == jobs_before  # nothing left behind
    assert not (runner.work_dir.parent / "evil.txt").exists()


def _zip_of_pngs(count):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        for index in range(count):
            png = io.BytesIO()
            Image.fromarray(np.full((16, 16, 3), 40 * index, np.uint8)).save(png, format="PNG")
            bundle.writestr(f"{index:04d}.png", png.getvalue())
    return archive.getvalue()


@pytest.mark.parametrize("case, words", [
    ("text as reference", ["upload 'reference' (hero_final.png)", "cannot be read"]),
    ("bad camera", ["upload 'cameras' #2 (shot_020.json)", "non-finite"]),
    ("zip of 2 frames", ["2 frame(s) at 24 fps, which is 1 at the model's 12 fps", "needs at least 2 frames at 12 fps",
                         "give at least 3 frames at 24 fps"]),
    ("still image as driving", ["upload 'driving' (pose.png)", "still image"]),
    ("still image named .mp4", ["upload 'driving' (pose.mp4)", "still image"]),
])
def test_service_errors_name_the_upload_field_and_file_not_server_paths(service, inputs, case, words):
    client, runner, _ = service
    request = job_files(inputs, cameras=[inputs["camera"], _nan_camera(inputs)] if case == "bad camera" else None)
    files = request["files"]
    if case == "text as reference":
        files[0] = ("reference", ("hero_final.png", b"not an image", "image/png"))
    if case == "bad camera":
        files[2] = ("cameras", ("shot_020.json", files[2][1][1], "application/json"))
    driving = {"zip of 2 frames": ("frames.zip", _zip_of_pngs(2)), "still image as driving": ("pose.png", inputs["reference"]),
               "still image named .mp4": ("pose.mp4", inputs["reference"])}.get(case)
    if driving is not None:
        request["files"] = [f for f in files if f[0] != "driving"] + [("driving", driving)]
    answer = client.post("/v1/jobs", headers=AUTH, **request)
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert all(word in detail for word in words), detail
    assert str(runner.work_dir) not in detail and "inputs/" not in detail, detail


def call_asgi(app, method, path, headers, chunks):
    """One request straight into the ASGI app, its body handed over chunk by chunk (like a chunked upload
    without Content-Length); returns (status, detail, response headers, body bytes the app took)."""
    taken, messages = [0], []
    chunks = iter(chunks)

    async def receive():
        body = next(chunks, None)
        if body is None:
            return {"type": "http.disconnect"}
        taken[0] += len(body)
        return {"type": "http.request", "body": body, "more_body": True}

    async def send(message):
        messages.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(name.lower().encode(), value.encode()) for name, value in headers.items()],
             "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8765)}
    asyncio.run(app(scope, receive, send))
    start = next(m for m in messages if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return start["status"], json.loads(body)["detail"], dict(start["headers"]), taken[0]


def endless_upload(block=256 * 1024, blocks=40):
    """A multipart body with one 10 MiB video part, produced lazily."""
    yield (b'--B\r\nContent-Disposition: form-data; name="driving"; filename="clip.mp4"\r\n'
           b"Content-Type: video/mp4\r\n\r\n")
    for _ in range(blocks):
        yield b"\0" * block


def _deleted_open_files():
    folder = "/proc/self/fd"
    names = []
    for fd in os.listdir(folder):
        try:
            names.append(os.readlink(os.path.join(folder, fd)))
        except OSError:
            pass
    return sum(name.endswith("(deleted)") for name in names)


def test_a_request_without_the_token_is_refused_before_its_body_is_read(service):
    _, runner, _ = service
    app = create_app(runner, TOKEN)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        headers = {**headers, "Content-Type": "multipart/form-data; boundary=B"}
        status, detail, _, taken = call_asgi(app, "POST", "/v1/jobs", headers, endless_upload())
        assert status == 401 and "token" in detail
        assert taken == 0  # not one byte of the upload was read, so none was stored


def test_a_chunked_upload_stops_at_the_limit_with_413_and_leaves_nothing(service):
    _, runner, _ = service
    app = create_app(runner, TOKEN)
    jobs_before, deleted_before = set(os.listdir(runner.jobs_dir)), _deleted_open_files()
    headers = {**AUTH, "Content-Type": "multipart/form-data; boundary=B"}  # no Content-Length
    status, detail, _, taken = call_asgi(app, "POST", "/v1/jobs", headers, endless_upload())
    assert status == 413 and "limit" in detail, detail
    assert taken <= runner.limits.max_upload_bytes + 256 * 1024  # stopped reading at the 2 MB limit, not at 10 MiB
    assert set(os.listdir(runner.jobs_dir)) == jobs_before
    assert _deleted_open_files() <= deleted_before  # the parser's spooled partial file is closed (so freed)


def test_a_full_queue_answers_429_with_retry_after(service, inputs):
    client, runner, pipe = service
    pipe.step_delay = 0.25
    runner.limits.max_queued_jobs = 1
    try:
        running = client.post("/v1/jobs", headers=AUTH, **job_files(inputs, settings={"num_inference_steps": 40})).json()["job_id"]
        wait_for(client, running, statuses=("running",))
        waiting = client.post("/v1/jobs", headers=AUTH, **job_files(inputs))
        assert waiting.status_code == 202
        jobs_before = set(os.listdir(runner.jobs_dir))
        refused = client.post("/v1/jobs", headers=AUTH, **job_files(inputs))
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 0
        assert "waiting" in refused.json()["detail"]
        assert set(os.listdir(runner.jobs_dir)) == jobs_before  # the refused upload was not stored
        for job_id in (running, waiting.json()["job_id"]):
            client.post(f"/v1/jobs/{job_id}/cancel", headers=AUTH)
        wait_for(client, running)
        assert client.post("/v1/jobs", headers=AUTH, **job_files(inputs)).status_code == 202  # room again
    finally:
        pipe.step_delay = 0.0
        runner.limits.max_queued_jobs = 16


def test_motion_cache_is_keyed_by_driving_bytes_and_model(tmp_path):
    from dimo_engine.motion_cache import MotionCache, model_id

    first, second = create_random_pipeline(seed=0, preset="tiny"), create_random_pipeline(seed=1, preset="tiny")
    assert model_id(first) == model_id(create_random_pipeline(seed=0, preset="tiny")) != model_id(second)
    cache = MotionCache(tmp_path)
    motion = first.encode_motion(torch.rand(9, 3, 32, 32), hand_boxes=torch.tensor([0.0, 0, 32, 32]).expand(9, 2, 4))
    cache.put("abc", model_id(first), motion)
    assert torch.equal(cache.get("abc", model_id(first)).body, motion.body)
    assert cache.get("abc", model_id(second)) is None and cache.get("abd", model_id(first)) is None


def test_the_services_routes_and_upload_fields_are_the_shared_schemas(service):
    _, runner, _ = service
    openapi = create_app(runner, TOKEN).openapi()
    served = {(method.upper(), path) for path, methods in openapi["paths"].items() for method in methods}
    assert served == {(route.method, route.template) for route in api.ROUTES}
    form = openapi["paths"][api.CREATE_JOB.template]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    fields = openapi["components"]["schemas"][form["$ref"].rsplit("/", 1)[-1]]["properties"]
    assert set(fields) == {api.UPLOAD_REFERENCE, api.UPLOAD_CAMERAS, api.UPLOAD_DRIVING, api.UPLOAD_MOTION,
                           api.UPLOAD_REFERENCE_CAMERA, api.FORM_SETTINGS}
    job = openapi["components"]["schemas"]["JobOut"]["properties"]
    assert job["status"]["enum"] == list(api.JOB_STATUSES)
    progress = openapi["components"]["schemas"]["Progress"]["properties"]
    assert set(job) == {f.name for f in dataclasses.fields(api.JobStatus)}
    assert set(progress) == {f.name for f in dataclasses.fields(api.Progress)}
    assert set(openapi["components"]["schemas"]["InfoOut"]["properties"]) == set(api.INFO_FIELDS)


@pytest.mark.parametrize("flag, value", [("--max-side", "0"), ("--max-cameras", "-2"), ("--max-upload-mb", "0")])
def test_serve_refuses_a_limit_below_one_before_the_model_loads(tmp_path, capsys, flag, value):
    from dimo_engine.cli.main import main

    assert main(["serve", "--port", "0", "--token-file", str(tmp_path / "serve.json"), "--model", str(tmp_path / "nowhere"),
                 flag, value]) == 2
    assert f"{flag} {value} is not a limit; give a whole number of at least 1" in capsys.readouterr().err
    assert not (tmp_path / "serve.json").exists()


def test_unknown_job_is_404(service):
    client, _, _ = service
    for method, path in [("GET", "/v1/jobs/nope"), ("POST", "/v1/jobs/nope/cancel"), ("GET", "/v1/jobs/nope/frames"),
                         ("DELETE", "/v1/jobs/nope"), ("GET", "/v1/jobs/nope/events")]:
        assert client.request(method, path, headers=AUTH).status_code == 404


def test_the_addon_client_follows_the_real_service_through_its_event_stream(service, inputs, tmp_path):
    import socket
    import threading

    import uvicorn

    from blender_addon.engine_client import EngineClient

    _, runner, pipe = service
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(runner, TOKEN), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    (tmp_path / "ref.png").write_bytes(inputs["reference"])
    (tmp_path / "drive.mp4").write_bytes(inputs["driving"])
    (tmp_path / "cam.json").write_text(json.dumps(inputs["camera"]))
    pipe.step_delay = 1.5 * api.HEARTBEAT_S  # a step longer than a heartbeat
    try:
        while not server.started:
            time.sleep(0.05)
        client = EngineClient(f"http://127.0.0.1:{sock.getsockname()[1]}", TOKEN, timeout=2 * api.HEARTBEAT_S)
        job_id = client.submit_job(tmp_path / "ref.png", [tmp_path / "cam.json"], driving=tmp_path / "drive.mp4",
                                   settings={"num_inference_steps": 2, "seed": 1})
        followed = list(client.follow_job(job_id))
    finally:
        pipe.step_delay = 0.0
        server.should_exit = True
        thread.join(10)
    statuses = [status for status in followed if status is not None]
    assert None in followed  # heartbeats kept the stream alive through the slow steps
    assert statuses[-1].status == api.DONE and statuses[-1].progress.stage == api.STAGE_DONE
    fractions = [status.fraction for status in statuses]
    stages = {status.stage for status in statuses}
    assert fractions == sorted(fractions) and api.STAGE_GENERATING in stages and stages <= set(api.PROGRESS_STAGES)


@pytest.mark.slow
def test_dimo_serve_process_on_loopback_streams_events(tmp_path, inputs):
    model = tmp_path / "model"
    create_random_pipeline(seed=0, preset="tiny").save_pretrained(model)
    token_file = tmp_path / "serve.json"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    process = subprocess.Popen(
        [sys.executable, "-m", "dimo_engine", "serve", "--port", "0", "--token-file", str(token_file),
         "--model", str(model), "--work-dir", str(tmp_path / "work")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while not token_file.is_file():
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline, "dimo serve did not write its token file"
            time.sleep(0.1)
        connection = json.loads(token_file.read_text())
        assert connection["url"].startswith("http://127.0.0.1:") and not connection["url"].endswith(":0")
        assert connection["pid"] == process.pid and oct(token_file.stat().st_mode)[-3:] == "600"
        headers = {"Authorization": f"Bearer {connection['token']}"}
        with httpx.Client(base_url=connection["url"], timeout=30) as client:
            assert client.get("/v1/health").status_code == 200
            assert client.get("/v1/info").status_code == 401
            job_id = client.post("/v1/jobs", headers=headers, **job_files(inputs)).json()["job_id"]
            events = []
            with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers) as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                for line in stream.iter_lines():
                    if line.startswith("data: "):
                        events.append(json.loads(line[len("data: "):]))
            assert events[-1]["status"] == "done"
            # A tiny job may be half done before the stream opens, so only the order is checked here;
            # the add-on client's test above slows the steps to see every stage and the heartbeats.
            fractions = [event["progress"]["fraction"] for event in events]
            assert fractions == sorted(fractions)
            assert client.get(f"/v1/jobs/{job_id}/frames", headers=headers).json()["cameras"][0][-1] == "0011.png"
    finally:
        process.terminate()
        process.wait(timeout=20)
    assert not token_file.exists()  # removed on a clean shutdown


@pytest.fixture(scope="module")
def api_schema(service):
    _, runner, _ = service
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(runner, TOKEN))


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
def test_openapi_schema_never_gives_5xx(case):
    from schemathesis.checks import not_a_server_error

    case.call_and_validate(headers=AUTH, checks=[not_a_server_error])
