"""Generate (a `ModalJobOperator`: the job runs in the background, Esc cancels it on the engine) and Cancel."""

import bpy

from .. import generate_job, generate_request, preferences
from ..engine_client import EngineError
from .modal_job import ModalJobOperator


class DIMO_OT_generate(ModalJobOperator, bpy.types.Operator):
    """Send the target cameras, reference and driving motion to the engine and load the result as a new take"""

    bl_idname = "dimo.generate"
    bl_label = "Generate"

    # A Generate runs for minutes, maybe under other modal operators: their timer events go on to them.
    tick_result = {"PASS_THROUGH"}

    @classmethod
    def poll(cls, context):
        job = generate_job.current_job()
        return job is None or job.finished

    def execute(self, context):
        return self.invoke(context, None)

    # -- ModalJobOperator: the job's sentences are those it left in the panel's state ----------

    def start_job(self, context):
        try:
            client = preferences.engine_client(context)
            request = generate_request.prepare_generate(context.scene, context.selected_objects)
            return generate_job.start_generate(client, request)
        except (EngineError, ValueError) as error:
            context.window_manager.dimo_job.error = str(error)
            raise

    def job_cancelling(self, context):
        context.window_manager.dimo_job.stage = "cancelling"

    def job_polled(self, context):
        state = context.window_manager.dimo_job
        if context.workspace is not None:
            context.workspace.status_text_set(f"DiMo: {state.message or state.stage}  (Esc to cancel)")

    def job_ended(self, context):
        if context.workspace is not None:
            context.workspace.status_text_set(None)

    def done_message(self, context):
        return context.window_manager.dimo_job.message

    def failed_message(self, context):
        return context.window_manager.dimo_job.error

    def cancelled_message(self, context):
        return context.window_manager.dimo_job.message


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
