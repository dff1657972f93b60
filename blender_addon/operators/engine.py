"""Operators that check, start and stop the DiMo engine; the waiting happens in background jobs."""

import bpy

from .. import engine_process, long_work, preferences
from ..engine_client import EngineError

CHECK_TIMEOUT_S = 5.0


def _set_engine_status(text: str) -> None:
    bpy.context.window_manager.dimo_job.engine_status = text
    for window in bpy.context.window_manager.windows:
        for area in window.screen.areas:
            area.tag_redraw()


def _in_background(name: str, work, describe_result) -> None:
    """Run `work()` as a background job; its result (described) or its error becomes the engine status."""
    long_work.BackgroundJob(
        name,
        lambda job: work(),
        on_done=lambda job, result: _set_engine_status(describe_result(result)),
        on_error=lambda job, sentence: _set_engine_status(sentence),
    ).start()


class DIMO_OT_check_engine(bpy.types.Operator):
    """Ask the engine for its model, device and version"""

    bl_idname = "dimo.check_engine"
    bl_label = "Check Engine"

    def execute(self, context):
        try:
            client = preferences.engine_client(context, timeout=CHECK_TIMEOUT_S)
        except EngineError as error:
            _set_engine_status(str(error))
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        _set_engine_status(f"Checking {client.url} ...")
        _in_background("check-engine", client.info, preferences.describe_engine)
        return {"FINISHED"}


class DIMO_OT_start_engine(bpy.types.Operator):
    """Start `dimo serve` with the engine Python set in the preferences, on a free port"""

    bl_idname = "dimo.start_engine"
    bl_label = "Start Engine"

    def execute(self, context):
        prefs = preferences.addon_preferences(context)
        if prefs is None:
            self.report({"ERROR"}, "The DiMo add-on is not enabled; enable it in Preferences > Add-ons.")
            return {"CANCELLED"}
        try:
            engine = engine_process.start_local_engine(
                bpy.path.abspath(prefs.python_executable), bpy.path.abspath(prefs.model_path) if prefs.model_path else ""
            )
        except EngineError as error:
            _set_engine_status(str(error))
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        _set_engine_status("Starting the local engine ...")
        _in_background(
            "start-engine",
            lambda: engine_process.wait_until_ready(engine),
            lambda connection: f"Local engine ready at {connection.url}.",
        )
        return {"FINISHED"}


class DIMO_OT_stop_engine(bpy.types.Operator):
    """Stop the engine this Blender session started"""

    bl_idname = "dimo.stop_engine"
    bl_label = "Stop Engine"

    def execute(self, context):
        if engine_process.local_engine() is None:
            self.report({"WARNING"}, "No local engine was started from this Blender session.")
            return {"CANCELLED"}
        _set_engine_status("Stopping the local engine ...")
        _in_background("stop-engine", engine_process.stop_local_engine, lambda _stopped: "Local engine stopped.")
        return {"FINISHED"}


classes = (DIMO_OT_check_engine, DIMO_OT_start_engine, DIMO_OT_stop_engine)
