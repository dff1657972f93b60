"""Where a Generate press becomes takes: `start_generate` runs a `GenerateRequest` (from
`generate_request`, main thread) through `generate_worker.run_generate` as the add-on's one kind of
background job (`long_work`), shows its progress in `window_manager.dimo_job`, and loads the downloaded
takes as image sequences when it is done.
"""

from __future__ import annotations

from . import long_work, takes
from .engine_client import EngineClient
from .generate_request import GenerateRequest
from .generate_worker import GeneratedTake, run_generate

JOB_NAME = "generate"


def current_job() -> long_work.BackgroundJob | None:
    """The last Generate job of this session, finished or not."""
    return long_work.latest_job(JOB_NAME)


def _job_state():
    import bpy

    return bpy.context.window_manager.dimo_job


def _redraw_panels() -> None:
    import bpy

    for window in bpy.context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()


def load_generated_takes(request: GenerateRequest, results: list[GeneratedTake]) -> list:
    """Main thread: load every committed take as an image sequence; returns the take items."""
    import bpy

    scene = bpy.data.scenes[request.scene_name]
    texture_obj = bpy.data.objects.get(request.texture_object_name) if request.texture_object_name else None
    items = []
    for result in results:
        camera_obj = bpy.data.objects.get(result.camera_name)
        if camera_obj is None:
            raise ValueError(f"The camera {result.camera_name} was deleted while generating; its take is in {result.take_dir}.")
        items.append(
            takes.load_take(
                scene, camera_obj, result.take_dir, request.frame_start, result.num_frames,
                use_image_plane=request.use_image_plane, texture_obj=texture_obj,
            )
        )
    return items


def start_generate(client: EngineClient, request: GenerateRequest) -> long_work.BackgroundJob:
    """Run the request in the background; progress and results land in `window_manager.dimo_job`."""
    if long_work.is_running(JOB_NAME):
        raise ValueError("A DiMo job is already running; wait for it or cancel it.")

    def on_message(_job, message):
        state = _job_state()
        state.stage = str(message.get("stage", ""))
        state.progress = min(1.0, max(0.0, float(message.get("fraction", 0.0))))
        state.message = f"{state.stage.capitalize()} {state.progress * 100:.0f}%"
        _redraw_panels()

    def on_done(_job, results):
        items = load_generated_takes(request, results)
        state = _job_state()
        state.progress, state.stage, state.error = 1.0, "done", ""
        state.message = "Loaded " + ", ".join(f"{item.name} ({item.num_frames} frames)" for item in items)
        _redraw_panels()

    def on_error(_job, sentence):
        state = _job_state()
        state.stage, state.error = "failed", sentence
        state.message = ""
        _redraw_panels()

    def on_cancelled(_job):
        state = _job_state()
        state.stage, state.error = "cancelled", ""
        state.message = "Cancelled; no take was written."
        _redraw_panels()

    state = _job_state()
    state.stage, state.progress, state.error, state.message = "starting", 0.0, "", "Starting"
    return long_work.BackgroundJob(
        JOB_NAME,
        lambda job: run_generate(job, client, request),
        on_message=on_message,
        on_done=on_done,
        on_error=on_error,
        on_cancelled=on_cancelled,
    ).start()
