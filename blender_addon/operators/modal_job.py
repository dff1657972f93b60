"""The modal half of the add-on's long work (`long_work`): an operator whose `invoke` starts one job, a
window timer that polls it, Esc that cancels it, and one report when it ends. The stepped renders
(`stepped.py`) and Generate are both built on it."""

from .. import long_work
from ..engine_client import EngineError


class ModalJobOperator:
    """Mixin for an operator that runs one `long_work` job from `invoke` to its end.

    Subclasses define `start_job(context)` (the started job; a ValueError or EngineError refuses with its
    sentence) and `done_message(context)`, and may override `job_started`, `job_polled`, `job_cancelling`,
    `job_ended`, `failed_message` and `cancelled_message`.
    """

    timer_interval_s = long_work.TIMER_INTERVAL_S
    # What a timer tick answers while the job runs; Generate, which runs for minutes, passes it on.
    tick_result = {"RUNNING_MODAL"}
    cancel_message = "Cancelled."
    _job = None
    _timer = None

    def start_job(self, context) -> long_work.BackgroundJob:
        raise NotImplementedError

    def done_message(self, context) -> str:
        raise NotImplementedError

    def failed_message(self, context) -> str:
        return self._job.error

    def cancelled_message(self, context) -> str:
        return self.cancel_message

    def job_started(self, context):
        """Runs once after the job started, before the timer is added."""

    def job_polled(self, context):
        """Runs after every poll, the last one included."""

    def job_cancelling(self, context):
        """Runs when Esc asked the job to stop."""

    def job_ended(self, context):
        """Runs once after the job is done, cancelled or failed, before the report."""

    def invoke(self, context, event):
        try:
            self._job = self.start_job(context)
        except (EngineError, ValueError) as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        self.job_started(context)
        window_manager = context.window_manager
        self._timer = window_manager.event_timer_add(self.timer_interval_s, window=context.window)
        window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type == "ESC" and event.value == "PRESS":
            # Polled at once: a main-thread job stops here, a background one once its worker has stopped.
            self._job.request_cancel()
            self.job_cancelling(context)
            running = {"RUNNING_MODAL"}
        elif event.type == "TIMER":
            running = self.tick_result
        else:
            return {"PASS_THROUGH"}
        self._job.poll()
        self.job_polled(context)
        if not self._job.finished:
            return running
        return self._end(context)

    def _end(self, context):
        try:
            self.job_ended(context)
        finally:
            if self._timer is not None:
                context.window_manager.event_timer_remove(self._timer)
                self._timer = None
        if self._job.state == "done":
            self.report({"INFO"}, self.done_message(context))
            return {"FINISHED"}
        if self._job.state == "failed":
            self.report({"ERROR"}, self.failed_message(context))
        else:
            self.report({"WARNING"}, self.cancelled_message(context))
        return {"CANCELLED"}
