"""Long work run by a modal operator (`operators/modal_job.py`): a main-thread generator run as a
`long_work.StepsJob`, or a background job, polled by the operator's timer."""

import threading
from types import SimpleNamespace

import pytest

from blender_addon import long_work
from blender_addon.engine_client import EngineError
from blender_addon.operators.modal_job import ModalJobOperator
from blender_addon.operators.stepped import SteppedOperator

pytestmark = pytest.mark.blender


class _WindowManager:
    def __init__(self):
        self.calls, self.timers_added = [], 0

    def progress_begin(self, low, high):
        self.calls.append("begin")

    def progress_update(self, value):
        self.calls.append(round(value, 3))

    def progress_end(self):
        self.calls.append("end")

    def event_timer_add(self, interval, window=None):
        self.timers_added += 1
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
    return SimpleNamespace(type=kind, value="PRESS")


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


class _Waiting(ModalJobOperator):
    """A background job whose worker stops only when `release` is set: the cancel is seen then."""

    def __init__(self):
        self.release, self.reports, self.ended_count = threading.Event(), [], 0

    def start_job(self, context):
        def work(job):
            self.release.wait(10)
            job.raise_if_cancelled()
            return "result"

        return long_work.BackgroundJob("_Waiting", work).start()

    def done_message(self, context):
        return "done"

    def job_ended(self, context):
        self.ended_count += 1

    def report(self, kind, message):
        self.reports.append((next(iter(kind)), message))


def test_escape_asks_a_background_job_to_stop_and_the_operator_ends_once_its_worker_has():
    operator, context = _Waiting(), _context()
    assert operator.invoke(context, _event("NONE")) == {"RUNNING_MODAL"}
    assert operator.modal(context, _event("ESC")) == {"RUNNING_MODAL"}  # the worker has not stopped yet
    assert operator.modal(context, _event("TIMER")) == {"RUNNING_MODAL"} and operator.ended_count == 0
    operator.release.set()
    operator._job.join(5)
    assert operator.modal(context, _event("TIMER")) == {"CANCELLED"}
    assert operator._job.state == "cancelled" and operator.ended_count == 1
    assert operator.reports == [("WARNING", "Cancelled.")]
    assert context.window_manager.timers_added == 1 and context.window_manager.calls == ["timer removed"]
    long_work.tick()  # the shared timer forgets the finished job


def test_a_job_the_engine_refuses_to_start_is_reported_and_adds_no_timer():
    class Refused(_Waiting):
        def start_job(self, context):
            raise EngineError("The engine at http://127.0.0.1:8765 is not running; start it in the DiMo panel.")

    operator, context = Refused(), _context()
    assert operator.invoke(context, _event("NONE")) == {"CANCELLED"}
    assert operator.reports == [("ERROR", "The engine at http://127.0.0.1:8765 is not running; start it in the DiMo panel.")]
    assert context.window_manager.timers_added == 0 and operator.ended_count == 0
