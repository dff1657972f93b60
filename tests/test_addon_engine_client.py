"""The add-on's engine client without Blender: it follows a job through the engine's event stream, and
polls where the engine has none or the stream breaks; the schema's routes and event format round-trip."""

from __future__ import annotations

import pytest

from addon_fake_engine import FakeEngine
from blender_addon.core import api_schema as api
from blender_addon.engine_client import EngineClient, EngineError


def submit(engine: FakeEngine, tmp_path) -> tuple[EngineClient, str]:
    (tmp_path / "ref.png").write_bytes(b"png")
    (tmp_path / "cam.json").write_text("{}")
    (tmp_path / "drive.mp4").write_bytes(b"mp4")
    client = EngineClient(engine.url, engine.token, timeout=5.0)
    job_id = client.submit_job(tmp_path / "ref.png", [tmp_path / "cam.json"], driving=tmp_path / "drive.mp4")
    return client, job_id


def test_a_job_is_followed_through_its_event_stream_without_polling(tmp_path):
    with FakeEngine(steps=4) as engine:
        client, job_id = submit(engine, tmp_path)
        statuses = [status for status in client.follow_job(job_id) if status is not None]
    assert engine.streamed == [job_id] and engine.status_polls == []
    assert [status.progress.step for status in statuses] == [1, 2, 3, 4, 4]
    assert statuses[-1].status == api.DONE and statuses[-1].finished and statuses[-1].fraction == 1.0
    assert all(status.stage == api.STAGE_GENERATING for status in statuses)


def test_without_an_event_stream_the_client_polls(tmp_path):
    with FakeEngine(steps=2, events=False) as engine:
        client, job_id = submit(engine, tmp_path)
        statuses = [status for status in client.follow_job(job_id) if status is not None]
    assert engine.streamed == [] and engine.status_polls == [job_id] * 3
    assert [status.status for status in statuses] == [api.RUNNING, api.RUNNING, api.DONE]


def test_a_job_the_engine_lost_ends_in_one_sentence(tmp_path, monkeypatch):
    from blender_addon import engine_client

    monkeypatch.setattr(engine_client, "STATUS_POLL_S", 0.01)
    with FakeEngine() as engine:
        client = EngineClient(engine.url, engine.token)
        with pytest.raises(EngineError, match=r"^No job nope\.$"):
            list(client.follow_job("nope"))
        assert engine.streamed == []


def test_routes_fill_in_and_match_their_own_paths():
    path = api.FRAME.path(job_id="a b", camera_index=2, name="0001.png")
    assert path == "/v1/jobs/a%20b/frames/2/0001.png"
    assert api.match_route("GET", path) == (api.FRAME, {"job_id": "a b", "camera_index": "2", "name": "0001.png"})
    assert api.match_route("POST", "/v1/jobs/x/cancel?now=1") == (api.CANCEL_JOB, {"job_id": "x"})
    assert api.match_route("PUT", "/v1/jobs") is None and api.match_route("GET", "/v1/jobs/x/y") is None
    with pytest.raises(TypeError):
        api.JOB.path()


def test_events_parse_back_with_heartbeats_between():
    status = api.JobStatus("j", api.RUNNING, api.Progress(step=3, fraction=0.5))
    wire = api.format_event(api.STATUS_EVENT, status.to_dict()) + api.HEARTBEAT + "data: a\ndata: b\n\n"
    events = list(api.parse_events(wire.splitlines(keepends=True)))
    assert events[0][0] == api.STATUS_EVENT and events[1] is None and events[2] == ("message", "a\nb")
    import json

    assert api.JobStatus.from_dict(json.loads(events[0][1])) == status


def test_the_upload_body_parses_back_as_the_same_fields_and_files(tmp_path):
    from email.parser import BytesParser
    from email.policy import HTTP

    from blender_addon.engine_client import _multipart_body

    video = tmp_path / "driving.mp4"
    video.write_bytes(b"\x00\r\n--dimo-not-a-boundary\r\n\xff" * 50)  # binary that looks like a part break
    body, content_type = _multipart_body({"settings": '{"seed": 3}', "note": "Düsseldorf take 2"}, [("video", video)])
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    parts = {part.get_param("name", header="content-disposition"): part for part in message.iter_parts()}
    assert set(parts) == {"settings", "note", "video"}
    assert parts["settings"].get_payload(decode=True) == b'{"seed": 3}'
    assert parts["note"].get_payload(decode=True).decode("utf-8") == "Düsseldorf take 2"
    assert parts["video"].get_filename() == "driving.mp4"
    assert parts["video"].get_content_type() == "video/mp4"
    assert parts["video"].get_payload(decode=True) == video.read_bytes()
