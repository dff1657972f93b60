"""Operators whose long work must run on the main thread (Blender renders), built on the add-on's one
job mechanism (`long_work.StepsJob`, run by `modal_job.ModalJobOperator`): the work is a generator that
yields (done, total) after each small step; the modal operator's timer polls the job, shows progress, and
Esc (or `request_cancel` on the job) cancels it by closing the generator, which cleans up after itself."""

from .. import long_work
from .modal_job import ModalJobOperator


class SteppedOperator(ModalJobOperator):
    """Mixin for an operator whose work is `steps(context)`, a generator of (done, total).

    Subclasses define `steps` and `finished(context) -> str` (the report when all steps ran), and may
    override `started`, `progress` and `ended`. Without a window (scripts,
    background mode) `execute` runs every step at once. The job is `long_work.latest_job(job_name)`.
    """

    # One step per tick: tick often, so the steps themselves set the pace.
    timer_interval_s = 0.01

    @property
    def job_name(self) -> str:
        return getattr(self, "bl_idname", type(self).__name__)

    def steps(self, context):
        raise NotImplementedError

    def finished(self, context) -> str:
        raise NotImplementedError

    def started(self, context):
        pass

    def progress(self, context, done: int, total: int):
        pass

    def ended(self, context):
        """Runs once after the last step, a cancel or an error."""

    def execute(self, context):
        try:
            job = long_work.StepsJob(self.job_name, self.steps(context))
        except ValueError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        try:
            job.run_to_end()
        finally:
            self.ended(context)
        if job.state == "failed":
            self.report({"ERROR"}, job.error)
            return {"CANCELLED"}
        self.report({"INFO"}, self.finished(context))
        return {"FINISHED"}

    # -- ModalJobOperator ----------------------------------------------------------------------

    def start_job(self, context) -> long_work.StepsJob:
        return long_work.StepsJob(
            self.job_name, self.steps(context), on_message=lambda job, step: self._progress(context, *step)
        ).start()

    def job_started(self, context):
        self.started(context)
        context.window_manager.progress_begin(0.0, 1.0)

    def job_ended(self, context):
        context.window_manager.progress_end()
        self.ended(context)

    def done_message(self, context) -> str:
        return self.finished(context)

    def _progress(self, context, done: int, total: int):
        self.progress(context, done, total)
        context.window_manager.progress_update(done / total)
        for area in context.screen.areas if context.screen else ():
            area.tag_redraw()
