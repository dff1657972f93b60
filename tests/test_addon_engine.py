"""Reaching the engine from the preferences: URL + token, the token file `dimo serve` writes, or a local
engine the add-on starts; "Check engine" shows model, device and version, or one clear reason."""

from __future__ import annotations

import json
import sys

import pytest

from addon_fake_engine import FakeEngine
from addon_scene import enable_addon, point_preferences_at
from test_addon_jobs import run_until_finished

pytestmark = pytest.mark.blender


def check_engine() -> str:
    import bpy

    from blender_addon import long_work

    bpy.ops.dimo.check_engine()
    for job in long_work.active_jobs():
        run_until_finished(job)
    return bpy.context.window_manager.dimo_job.engine_status


@pytest.fixture(autouse=True)
def addon():
    enable_addon()


def test_check_engine_through_url_and_through_token_file(tmp_path):
    with FakeEngine() as engine:
        point_preferences_at(engine.url, engine.token)
        assert check_engine() == "Engine 0.1.0: fake-tiny on cpu (float32), 64x64x5"
        prefs = point_preferences_at("http://127.0.0.1:9", "wrong")  # the token file wins over these
        token_file = tmp_path / "serve.json"
        token_file.write_text(json.dumps({"url": engine.url, "token": engine.token, "pid": 1}))
        prefs.token_file = str(token_file)
        assert check_engine().startswith("Engine 0.1.0: fake-tiny on cpu")


@pytest.mark.parametrize(
    "url, token_file, expected",
    [
        ("localhost:8765", "", "The engine URL 'localhost:8765' is not an http:// address; set it in the DiMo add-on preferences."),
        ("http://127.0.0.1:8765", "missing.json", "does not exist; start the engine or fix the path in the preferences."),
        ("http://localhost:abc", "", "'http://localhost:abc' is not a valid address (it needs a host and a numeric port, "
                                     "like http://127.0.0.1:8765); set it in the DiMo add-on preferences."),
    ],
)
def test_check_engine_names_a_bad_setting(tmp_path, url, token_file, expected):
    prefs = point_preferences_at(url, "")
    prefs.token_file = str(tmp_path / token_file) if token_file else ""
    with pytest.raises(RuntimeError):  # the operator reports an ERROR
        check_engine()
    import bpy

    assert bpy.context.window_manager.dimo_job.engine_status.endswith(expected)


@pytest.mark.parametrize("answer", ["404", "html"])
def test_a_server_that_is_not_a_dimo_engine_is_named_as_such(tmp_path, answer):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import bpy

    class SomeOtherServer(BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"<html>Welcome to nginx!</html>"
            self.send_response(404 if answer == "404" else 200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), SomeOtherServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        point_preferences_at(f"http://127.0.0.1:{server.server_port}", "token").token_file = ""
        check_engine()
        status = bpy.context.window_manager.dimo_job.engine_status
    finally:
        server.shutdown()
        server.server_close()
    assert f"The server at http://127.0.0.1:{server.server_port} answers but is not a DiMo engine" in status, status
    assert "check the URL and port" in status


def test_start_engine_with_a_missing_python_says_what_to_set(tmp_path):
    import bpy

    prefs = enable_addon()
    prefs.connection, prefs.python_executable = "LOCAL", str(tmp_path / "no-python")
    with pytest.raises(RuntimeError):
        bpy.ops.dimo.start_engine()
    assert bpy.context.window_manager.dimo_job.engine_status.startswith(f"The engine Python '{tmp_path / 'no-python'}' does not exist")


@pytest.mark.slow
def test_local_engine_that_exits_reports_its_last_words(tmp_path):
    import bpy

    from blender_addon import engine_process, long_work

    prefs = enable_addon()
    prefs.connection, prefs.python_executable, prefs.model_path = "LOCAL", sys.executable, str(tmp_path)
    assert bpy.ops.dimo.start_engine() == {"FINISHED"}
    job = next(job for job in long_work.active_jobs() if job.name == "start-engine")
    run_until_finished(job, timeout_s=120)
    status = bpy.context.window_manager.dimo_job.engine_status
    assert job.state == "failed"
    assert status.startswith("The local engine exited with code 2") and "is not a DiMo pipeline folder" in status, status
    assert engine_process.stop_local_engine()  # forget the dead process
    assert bpy.ops.dimo.stop_engine() == {"CANCELLED"}  # nothing to stop any more
