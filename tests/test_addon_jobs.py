"""Generate against a fake engine: no main-thread step waits for the engine (each is far shorter than one
engine request timed in the same run), results become a new take, and a down, slow or failing engine gives
one clear sentence with nothing half-loaded. benchmarks/bench_addon_main_thread.py prints the steps' length."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from addon_fake_engine import FakeEngine
from addon_scene import enable_addon, make_shot, point_preferences_at

pytestmark = pytest.mark.blender

# A main-thread step that waited for the engine would last at least one request. Steps are compared with a
# request timed the blocking way on this machine in the same run, so a loaded machine slows both alike.
MAIN_THREAD_SHARE_OF_A_REQUEST = 0.5


def blocking_request_s(client) -> float:
    """Seconds one `info` request takes when the caller waits for it (an engine error still took the time)."""
    from blender_addon.engine_client import EngineError

    started = time.perf_counter()
    try:
        client.info()
    except EngineError:
        pass
    return time.perf_counter() - started


def run_until_finished(job, timeout_s: float = 30.0, modal_operator=None) -> float:
    """Drive the shared timer callback (and the modal operator's timer step, if given) as Blender's
    event loop would; returns the longest single call."""
    from blender_addon import long_work

    longest = 0.0
    deadline = time.monotonic() + timeout_s
    timer_event = SimpleNamespace(type="TIMER", value="NOTHING")
    while not job.finished:
        assert time.monotonic() < deadline, f"job {job.name} did not finish within {timeout_s} s"
        started = time.perf_counter()
        long_work.tick()
        longest = max(longest, time.perf_counter() - started)
        if modal_operator is not None:
            started = time.perf_counter()
            modal_operator.result = modal_operator.step(timer_event)
            longest = max(longest, time.perf_counter() - started)
        time.sleep(0.01)
    return longest


class ModalStandIn:
    """The Generate operator's modal step run outside Blender's event loop (which the bpy module lacks)."""

    def __init__(self, job):
        # No window timer was added (`_timer` is None), so the operator's end removes none.
        self._job, self._timer, self.reports, self.result = job, None, [], None

    def __getattr__(self, name):
        """The operator's own attributes, its methods bound to this stand-in (a registered operator
        class cannot be instantiated outside Blender's event loop)."""
        from blender_addon.operators.generate import DIMO_OT_generate

        value = getattr(DIMO_OT_generate, name)
        return value.__get__(self) if callable(value) else value

    def step(self, event):
        import bpy

        return self.modal(bpy.context, event)

    def report(self, kind, text):
        self.reports.append((set(kind), text))


def start_generate(scene):
    import bpy

    from blender_addon import generate_job, generate_request, preferences

    client = preferences.engine_client(bpy.context)
    request = generate_request.prepare_generate(scene, [])
    return generate_job.start_generate(client, request)


def take_images() -> set[str]:
    import bpy

    return {image.name for image in bpy.data.images if image.name.startswith("DiMo ")}


def assert_nothing_loaded(scene, blend_dir: Path, images_before: set[str]):
    assert len(scene.dimo.takes) == 0
    assert take_images() == images_before
    assert len(scene.camera.data.background_images) == 0
    leftovers = [p for p in (blend_dir / "dimo").rglob("*") if p.is_file() or p.name.startswith(("take_", ".take"))]
    assert leftovers == [], f"left behind: {leftovers}"


def one_sentence(text: str) -> bool:
    return text.endswith(".") and ". " not in text.rstrip(".") and "\n" not in text


@pytest.fixture(autouse=True)
def addon(tmp_path_factory):
    import bpy
    import imageio.v3 as iio
    import numpy as np

    enable_addon()
    # Blender's UI has loaded images long before a job ends; the bpy module initialises its image
    # and colour-management code on the first load (about 10 ms), which is not the add-on's cost.
    warm_up = tmp_path_factory.mktemp("warm_up") / "warm_up.png"
    iio.imwrite(warm_up, np.zeros((8, 8, 3), dtype=np.uint8))
    bpy.data.images.remove(bpy.data.images.load(str(warm_up)))
    yield


def test_generate_with_slow_engine_keeps_main_thread_free_and_loads_a_take(tmp_path):
    import bpy

    from blender_addon import generate_job, preferences

    scene = make_shot(tmp_path)
    with FakeEngine(delay_s=0.25, num_frames=5, steps=3) as engine:
        point_preferences_at(engine.url, engine.token)
        # The operator path: invoke starts the modal operator and the background job.
        assert bpy.ops.dimo.generate("INVOKE_DEFAULT") == {"RUNNING_MODAL"}
        job = generate_job.current_job()
        modal = ModalStandIn(job)
        longest = run_until_finished(job, modal_operator=modal)
        assert job.state == "done", bpy.context.window_manager.dimo_job.error
        request_s = blocking_request_s(preferences.engine_client(bpy.context))
    assert modal.result == {"FINISHED"} and modal.reports[-1][0] == {"INFO"}
    assert longest < MAIN_THREAD_SHARE_OF_A_REQUEST * request_s, (
        f"a timer callback held the main thread {longest * 1000:.1f} ms; one engine request takes {request_s * 1000:.1f} ms")
    assert engine.streamed == ["job1"] and engine.status_polls == []  # progress came through the event stream
    upload = engine.uploads[0]
    assert {"reference", "driving", "cameras", "settings"} <= set(upload)
    assert len(upload["cameras"]) == 1
    take_dir = tmp_path / "dimo" / scene.camera.name / "take_001"
    assert sorted(p.name for p in take_dir.iterdir()) == [f"{i:04d}.png" for i in range(1, 6)]
    item = scene.dimo.takes[0]
    assert (item.take, item.camera, item.num_frames, item.frame_start) == ("take_001", scene.camera.name, 5, 1)
    background = scene.camera.data.background_images[0]
    assert scene.camera.data.show_background_images
    assert background.image.source == "SEQUENCE"
    assert background.image_user.frame_duration == 5 and background.image_user.frame_start == 1
    assert bpy.context.window_manager.dimo_job.error == ""


def test_engine_down_gives_one_sentence_and_loads_nothing(tmp_path):
    import bpy

    scene = make_shot(tmp_path)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    point_preferences_at(f"http://127.0.0.1:{closed_port}", "secret")
    images_before = take_images()
    job = start_generate(scene)
    run_until_finished(job)
    error = bpy.context.window_manager.dimo_job.error
    assert job.state == "failed"
    assert error.startswith("Cannot reach the engine") and one_sentence(error), error
    assert_nothing_loaded(scene, tmp_path, images_before)


def test_slow_engine_times_out_with_one_sentence(tmp_path):
    import bpy

    from blender_addon import generate_job, generate_request
    from blender_addon.engine_client import EngineClient

    scene = make_shot(tmp_path)
    with FakeEngine(delay_s=1.5) as engine:
        images_before = take_images()
        request = generate_request.prepare_generate(scene, [])
        client = EngineClient(engine.url, engine.token, timeout=0.3)
        job = generate_job.start_generate(client, request)
        longest = run_until_finished(job)
        request_s = blocking_request_s(client)  # waits out the client's timeout
    error = bpy.context.window_manager.dimo_job.error
    assert job.state == "failed" and "did not answer" in error and one_sentence(error), error
    assert longest < MAIN_THREAD_SHARE_OF_A_REQUEST * request_s
    assert_nothing_loaded(scene, tmp_path, images_before)


@pytest.mark.parametrize(
    "engine_kwargs, expected",
    [
        ({"submit_error": (422, "The driving video has no frames; choose another video")}, "The driving video has no frames; choose another video."),
        ({"fail_job": "The model ran out of memory; use a smaller resolution."}, "The model ran out of memory; use a smaller resolution."),
        ({"token": "another-token"}, "The engine refused the token; copy the token from the engine's token file into the add-on preferences."),
    ],
)
def test_engine_errors_reach_the_panel_and_nothing_is_half_loaded(tmp_path, engine_kwargs, expected):
    import bpy

    scene = make_shot(tmp_path)
    with FakeEngine(**engine_kwargs) as engine:
        point_preferences_at(engine.url, "secret")
        images_before = take_images()
        job = start_generate(scene)
        run_until_finished(job)
    assert job.state == "failed"
    assert bpy.context.window_manager.dimo_job.error == expected
    assert_nothing_loaded(scene, tmp_path, images_before)


def test_esc_cancels_on_the_engine_and_writes_no_take(tmp_path):
    import bpy

    from blender_addon import generate_job

    scene = make_shot(tmp_path)
    with FakeEngine(steps=1000) as engine:
        point_preferences_at(engine.url, engine.token)
        images_before = take_images()
        job = start_generate(scene)
        while not engine.jobs or engine.jobs["job1"]["step"] < 2:
            time.sleep(0.05)
        modal = ModalStandIn(job)
        assert modal.step(SimpleNamespace(type="ESC", value="PRESS")) == {"RUNNING_MODAL"}
        run_until_finished(job, modal_operator=modal)
        assert engine.cancelled == ["job1"]
        assert modal.result == {"CANCELLED"} and modal.reports[-1][0] == {"WARNING"}
    assert job.state == "cancelled" and generate_job.current_job() is job
    assert bpy.context.window_manager.dimo_job.stage == "cancelled"
    assert_nothing_loaded(scene, tmp_path, images_before)


def test_bad_shot_settings_are_refused_before_anything_is_sent(tmp_path):
    import bpy

    from blender_addon import generate_request

    scene = make_shot(tmp_path)
    scene.dimo.anchor = None
    with pytest.raises(ValueError, match="No character anchor is set"):
        generate_request.prepare_generate(scene, [])
    scene.dimo.anchor = bpy.data.objects["Anchor"]
    scene.dimo.driving_video = str(tmp_path / "missing.mp4")
    with pytest.raises(ValueError, match="missing.mp4 does not exist"):
        generate_request.prepare_generate(scene, [])
    scene.dimo.target_cameras = "MARKERS"
    scene.dimo.driving_video = scene.dimo.reference_image
    with pytest.raises(ValueError, match="No timeline marker"):
        generate_request.prepare_generate(scene, [])


def test_an_engine_without_an_event_stream_is_polled_for_the_same_take(tmp_path):
    import bpy

    scene = make_shot(tmp_path)
    with FakeEngine(events=False, steps=2) as engine:
        point_preferences_at(engine.url, engine.token)
        job = start_generate(scene)
        run_until_finished(job)
        assert job.state == "done", bpy.context.window_manager.dimo_job.error
    assert engine.streamed == [] and engine.status_polls == ["job1"] * 3
    assert [(t.take, t.num_frames) for t in scene.dimo.takes] == [("take_001", 5)]


def test_marker_cameras_each_get_their_own_take(tmp_path):
    import bpy

    from blender_addon import generate_request

    scene = make_shot(tmp_path)
    first = scene.camera
    second = bpy.data.objects.new("Side", bpy.data.cameras.new("Side"))
    second.location = (8.0, 1.0, 1.5)
    scene.collection.objects.link(second)
    scene.timeline_markers.new("A", frame=1).camera = first
    scene.timeline_markers.new("B", frame=3).camera = second
    scene.timeline_markers.new("late", frame=50).camera = bpy.data.objects.new("Late", bpy.data.cameras.new("Late"))
    scene.dimo.target_cameras = "MARKERS"
    for obj in scene.objects:
        obj.select_set(obj == second)
    assert [c.name for c in generate_request.target_camera_objects(scene, bpy.context.selected_objects, "SELECTED")] == [second.name]
    with FakeEngine() as engine:
        point_preferences_at(engine.url, engine.token)
        job = start_generate(scene)
        run_until_finished(job)
        assert job.state == "done", bpy.context.window_manager.dimo_job.error
    assert len(engine.uploads[0]["cameras"]) == 2  # the marker at frame 50 is outside the range
    assert [(t.camera, t.take) for t in scene.dimo.takes] == [(first.name, "take_001"), (second.name, "take_001")]
    for camera in (first, second):
        assert camera.data.background_images[0].image.source == "SEQUENCE"
        assert (tmp_path / "dimo" / camera.name / "take_001" / "0005.png").is_file()
