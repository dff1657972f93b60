"""The add-on against a real `dimo serve` with a tiny random model, all through its operators: start the
engine from the preferences, check it, render the driving clip and the reference, generate (frames come
back as an image sequence on the camera background), cancel a second job, stop the engine."""

from __future__ import annotations

import sys
import time

import pytest

from addon_scene import enable_addon, make_shot
from test_addon_jobs import run_until_finished
from test_addon_render import add_animated_character

pytestmark = [pytest.mark.blender, pytest.mark.slow]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from dimo_engine.pipelines import create_random_pipeline

    folder = tmp_path_factory.mktemp("model") / "tiny"
    create_random_pipeline(seed=0, preset="tiny").save_pretrained(folder)
    return folder


def wait_for_background_job(name: str, timeout_s: float = 120.0):
    from blender_addon import long_work

    job = next(job for job in reversed(long_work.active_jobs()) if job.name == name)
    run_until_finished(job, timeout_s)
    return job


def test_generate_round_trip_through_a_real_engine(tmp_path, tiny_model):
    import bpy

    from blender_addon import engine_process, generate_job, generate_request, preferences

    prefs = enable_addon()
    prefs.connection = "LOCAL"
    prefs.python_executable = sys.executable
    prefs.model_path = str(tiny_model)
    state = bpy.context.window_manager.dimo_job
    scene = make_shot(tmp_path, frame_end=9)  # 9 frames at 24 fps: 5 frames at the model's 12 fps
    body, _wall = add_animated_character(scene)
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.render.resolution_x = scene.render.resolution_y = 64
    try:
        assert bpy.ops.dimo.start_engine() == {"FINISHED"}
        started = wait_for_background_job("start-engine", timeout_s=180)
        assert started.state == "done", state.engine_status
        assert bpy.ops.dimo.check_engine() == {"FINISHED"}
        assert wait_for_background_job("check-engine").state == "done"
        assert " on cpu" in state.engine_status, state.engine_status

        assert bpy.ops.dimo.render_driving() == {"FINISHED"}
        for obj in scene.objects:
            obj.select_set(obj == body)
        assert bpy.ops.dimo.render_reference() == {"FINISHED"}
        assert scene.dimo.reference_camera.endswith("reference_001.json")

        assert bpy.ops.dimo.generate("INVOKE_DEFAULT") == {"RUNNING_MODAL"}
        job = generate_job.current_job()
        started = time.perf_counter()
        longest = run_until_finished(job, timeout_s=300)
        job_s = time.perf_counter() - started
        assert job.state == "done", state.error
        # Waiting on the main thread would hold it for much of the job; steps are a small share of it.
        assert longest < 0.1 * job_s, f"a timer callback held the main thread {longest:.2f} s of a {job_s:.1f} s job"
        take_dir = tmp_path / "dimo" / scene.camera.name / "take_001"
        frames = sorted(p.name for p in take_dir.iterdir())
        assert frames == [f"{i:04d}.png" for i in range(1, 10)]  # the 5 generated frames spread over 9 scene frames
        background = scene.camera.data.background_images[0]
        assert background.image.source == "SEQUENCE"
        assert (background.image_user.frame_start, background.image_user.frame_duration) == (1, 9)
        assert scene.dimo.takes[-1].num_frames == 9

        # A long second job is cancelled on the engine and leaves no take behind.
        scene.dimo.num_inference_steps = 200
        job = generate_job.start_generate(preferences.engine_client(bpy.context), generate_request.prepare_generate(scene, []))
        assert bpy.ops.dimo.cancel() == {"FINISHED"}
        run_until_finished(job, timeout_s=120)
        assert job.state == "cancelled", (job.state, state.error)
        assert sorted(p.name for p in (tmp_path / "dimo" / scene.camera.name).iterdir()) == ["take_001"]
    finally:
        process = engine_process.local_engine()
        if process is not None:
            assert bpy.ops.dimo.stop_engine() == {"FINISHED"}
            wait_for_background_job("stop-engine", timeout_s=30)
            assert not process.running
