"""Operators whose long work must run on the main thread (Blender renders), built on the add-on's one
job mechanism (`long_work.StepsJob`): the work is a generator that yields (done, total) after each small
step; the modal operator's timer polls the job, shows progress, and Esc (or `request_cancel` on the job)
cancels it by closing the generator, which cleans up after itself."""

from .. import long_work


class SteppedOperator:
    """Mixin for an operator whose work is `steps(context)`, a generator of (done, total).

    Subclasses define `steps` and `finished(context) -> str` (the report when all steps ran), and may
    override `started`, `progress` and `ended`. Without a window (scripts,
    background mode) `execute` runs every step at once. The job is `long_work.latest_job(job_name)`.
    """

    cancel_message = "Cancelled."
    _job = None
    _timer = None

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

    def invoke(self, context, event):
        try:
            self._job = long_work.StepsJob(
                self.job_name, self.steps(context), on_message=lambda job, step: self._progress(context, *step)
            ).start()
        except ValueError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        self.started(context)
        window_manager = context.window_manager
        window_manager.progress_begin(0.0, 1.0)
        self._timer = window_manager.event_timer_add(0.01, window=context.window)
        window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type == "ESC":
            self._job.request_cancel()
        elif event.type != "TIMER":
            return {"PASS_THROUGH"}
        if not self._job.poll():
            return {"RUNNING_MODAL"}
        self._end(context)
        if self._job.state == "done":
            self.report({"INFO"}, self.finished(context))
            return {"FINISHED"}
        if self._job.state == "failed":
            self.report({"ERROR"}, self._job.error)
        else:
            self.report({"WARNING"}, self.cancel_message)
        return {"CANCELLED"}

    def _progress(self, context, done: int, total: int):
        self.progress(context, done, total)
        context.window_manager.progress_update(done / total)
        for area in context.screen.areas if context.screen else ():
            area.tag_redraw()

    def _end(self, context):
        context.window_manager.progress_end()
        context.window_manager.event_timer_remove(self._timer)
        self.ended(context)
