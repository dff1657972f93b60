"""Long main-thread work (Blender renders) without freezing the interface, done one way everywhere:
the work is a generator that yields (done, total) after each small step; a modal operator advances it
from a timer, shows progress, and Esc cancels by closing the generator, which cleans up after itself."""


class SteppedOperator:
    """Mixin for an operator whose work is `steps(context)`, a generator of (done, total).

    Subclasses define `steps` and `finished(context) -> str` (the report when all steps ran), and may
    override `started`, `progress`, `ended` and `cancel_requested`. Without a window (scripts,
    background mode) `execute` runs every step at once.
    """

    cancel_message = "Cancelled."
    _steps = None
    _timer = None

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

    def cancel_requested(self, context) -> bool:
        return False

    def execute(self, context):
        try:
            for _ in self.steps(context):
                pass
        except ValueError as error:
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        finally:
            self.ended(context)
        self.report({"INFO"}, self.finished(context))
        return {"FINISHED"}

    def invoke(self, context, event):
        try:
            self._steps = self.steps(context)
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
        if event.type == "ESC" or self.cancel_requested(context):
            self._steps.close()  # runs the generator's clean-up: nothing half-written stays
            self._end(context)
            self.report({"WARNING"}, self.cancel_message)
            return {"CANCELLED"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        try:
            done, total = next(self._steps)
        except StopIteration:
            self._end(context)
            self.report({"INFO"}, self.finished(context))
            return {"FINISHED"}
        except (ValueError, RuntimeError) as error:
            self._end(context)
            self.report({"ERROR"}, str(error))
            return {"CANCELLED"}
        self.progress(context, done, total)
        context.window_manager.progress_update(done / total)
        for area in context.screen.areas if context.screen else ():
            area.tag_redraw()
        return {"RUNNING_MODAL"}

    def _end(self, context):
        context.window_manager.progress_end()
        context.window_manager.event_timer_remove(self._timer)
        self.ended(context)

