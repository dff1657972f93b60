"""Generate (modal: the job runs in the background, Esc cancels it on the engine) and Cancel."""

import bpy

from .. import generate_job, generate_request, preferences
from ..engine_client import EngineError

MODAL_TIMER_S = 0.1


class DIMO_OT_generate(bpy.types.Operator):
    """Send the target cameras, reference and driving motion to the engine and load the result as a new take"""

    bl_idname = "dimo.generate"
    bl_label = "Generate"

    _timer = None
    _job = None

    @classmethod
    def poll(cls, context):
        job = generate_job.current_job()
        return job is None or job.finished

    def invoke(self, context, event):
        try:
            client = preferences.engine_client(context)
            request = generate_request.prepare_generate(context.scene, context.selected_objects)
            self._job = generate_job.start_generate(client, request)
        except (EngineError, ValueError) as error:
            context.window_manager.dimo_job.error = str(error)
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        self._timer = context.window_manager.event_timer_add(MODAL_TIMER_S, window=context.window)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        return self.invoke(context, None)

    def modal(self, context, event):
        if event.type == "ESC" and event.value == "PRESS":
            self._job.request_cancel()
            context.window_manager.dimo_job.stage = "cancelling"
            return {"RUNNING_MODAL"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        self._job.poll()
        state = context.window_manager.dimo_job
        if context.workspace is not None:
            context.workspace.status_text_set(f"DiMo: {state.message or state.stage}  (Esc to cancel)")
        if not self._job.finished:
            return {"PASS_THROUGH"}
        self._finish(context)
        if self._job.state == "done":
            self.report({"INFO"}, state.message)
            return {"FINISHED"}
        if self._job.state == "failed":
            self.report({"ERROR"}, state.error)
        else:
            self.report({"WARNING"}, state.message)
        return {"CANCELLED"}

    def _finish(self, context):
        if self._timer is not None:
            context.window_manager.event_timer_remove(self._timer)
            self._timer = None
        if context.workspace is not None:
            context.workspace.status_text_set(None)


class DIMO_OT_cancel(bpy.types.Operator):
    """Cancel the running DiMo job on the engine"""

    bl_idname = "dimo.cancel"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context):
        job = generate_job.current_job()
        return job is not None and not job.finished

    def execute(self, context):
        generate_job.current_job().request_cancel()
        context.window_manager.dimo_job.stage = "cancelling"
        return {"FINISHED"}


classes = (DIMO_OT_generate, DIMO_OT_cancel)
