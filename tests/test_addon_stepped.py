"""Long main-thread work: a generator run as a `long_work.StepsJob`, polled by a modal operator's timer."""

from types import SimpleNamespace

import pytest

from blender_addon.operators.stepped import SteppedOperator

pytestmark = pytest.mark.blender


class _WindowManager:
    def __init__(self):
        self.calls = []

    def progress_begin(self, low, high):
        self.calls.append("begin")

    def progress_update(self, value):
        self.calls.append(round(value, 3))

    def progress_end(self):
        self.calls.append("end")

    def event_timer_add(self, interval, window=None):
        return "timer"

    def event_timer_remove(self, timer):
        self.calls.append("timer removed")

    def modal_handler_add(self, operator):
        pass


class _Counting(SteppedOperator):
    def __init__(self, total=3):
        self.total, self.reports, self.cleaned_up, self.ended_count = total, [], False, 0

    def steps(self, context):
        try:
            for done in range(1, self.total + 1):
                yield done, self.total
        finally:
            self.cleaned_up = True

    def finished(self, context):
        return "all done"

    def ended(self, context):
        self.ended_count += 1

    def report(self, kind, message):
        self.reports.append((next(iter(kind)), message))


def _context():
    return SimpleNamespace(window_manager=_WindowManager(), window=None, screen=None)


def _event(kind):
    return SimpleNamespace(type=kind)


def test_timer_ticks_advance_the_steps_and_finish_once():
    operator, context = _Counting(total=3), _context()
    assert operator.invoke(context, _event("NONE")) == {"RUNNING_MODAL"}
    assert operator.modal(context, _event("MOUSEMOVE")) == {"PASS_THROUGH"}
    results = [operator.modal(context, _event("TIMER")) for _ in range(4)]
    assert results == [{"RUNNING_MODAL"}] * 3 + [{"FINISHED"}]
    assert context.window_manager.calls == ["begin", 0.333, 0.667, 1.0, "end", "timer removed"]
    assert operator.reports == [("INFO", "all done")] and operator.ended_count == 1


def test_escape_closes_the_generator_so_its_clean_up_runs():
    operator, context = _Counting(total=5), _context()
    operator.invoke(context, _event("NONE"))
    operator.modal(context, _event("TIMER"))
    assert operator.modal(context, _event("ESC")) == {"CANCELLED"}
    assert operator.cleaned_up and operator.ended_count == 1
    assert operator.reports == [("WARNING", "Cancelled.")]


def test_a_cancel_asked_of_the_job_ends_it_at_the_next_timer_tick():
    from blender_addon import long_work

    operator, context = _Counting(total=5), _context()
    operator.invoke(context, _event("NONE"))
    operator.modal(context, _event("TIMER"))
    assert long_work.is_running("_Counting")
    long_work.latest_job("_Counting").request_cancel()  # what a Cancel button does
    assert operator.modal(context, _event("TIMER")) == {"CANCELLED"}
    assert operator.cleaned_up and not long_work.is_running("_Counting")
    assert operator.reports == [("WARNING", "Cancelled.")]


def test_an_error_in_a_step_is_reported_as_one_sentence():
    class Failing(_Counting):
        def steps(self, context):
            yield 1, 2
            raise ValueError("No character anchor is set; pick one in the DiMo panel.")

    operator, context = Failing(), _context()
    operator.invoke(context, _event("NONE"))
    operator.modal(context, _event("TIMER"))
    assert operator.modal(context, _event("TIMER")) == {"CANCELLED"}
    assert operator.reports == [("ERROR", "No character anchor is set; pick one in the DiMo panel.")]
    assert operator.ended_count == 1


def test_execute_runs_every_step_at_once():
    operator = _Counting(total=4)
    assert operator.execute(_context()) == {"FINISHED"}
    assert operator.cleaned_up and operator.reports == [("INFO", "all done")]
