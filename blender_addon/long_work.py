"""The one way the add-on runs long work, and the one place its jobs live.

A job is a `BackgroundJob`: `work(job)` runs in a daemon thread, must not touch `bpy`, and `post`s
messages; or a `StepsJob`, for work that must run on the main thread (Blender renders): a generator of
(done, total) advanced one step per poll. The main thread `poll`s a job, from the shared
`bpy.app.timers` callback `tick` or from the modal operator that started it (`operators/modal_job.py`,
the one modal loop: the stepped renders and Generate are built on it), and applies what it posted in
small, fast handlers, so every main-thread step stays far below 50 ms. `latest_job(name)` finds a job
by name, finished or not; the window manager's `dimo_job` only shows its progress and messages.
"""

from __future__ import annotations

import queue
import threading
import time
import traceback
from typing import Any, Callable

from .engine_client import EngineError

TIMER_INTERVAL_S = 0.1
# A single drain never holds the main thread longer than this, however many messages wait.
MAX_DRAIN_S = 0.02


class JobCancelled(Exception):
    """Raised inside a work function when the artist asked to cancel."""


class BackgroundJob:
    """Runs `work(job)` in a daemon thread; `poll()` on the main thread applies what it posted.

    Handlers (main thread): `on_message(job, message)`, `on_done(job, result)`, `on_error(job, sentence)`,
    `on_cancelled(job)`.
    """

    def __init__(
        self,
        name: str,
        work: Callable[["BackgroundJob"], Any] | None,
        on_message: Callable[["BackgroundJob", Any], None] | None = None,
        on_done: Callable[["BackgroundJob", Any], None] | None = None,
        on_error: Callable[["BackgroundJob", str], None] | None = None,
        on_cancelled: Callable[["BackgroundJob"], None] | None = None,
    ):
        self.name = name
        self.work = work
        self.on_message = on_message
        self.on_done = on_done
        self.on_error = on_error
        self.on_cancelled = on_cancelled
        self.state = "pending"  # pending | running | done | failed | cancelled (main-thread view)
        self.result: Any = None
        self.error: str | None = None
        self._messages: queue.Queue = queue.Queue()
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None

    # -- worker side ---------------------------------------------------------------------------

    def post(self, message: Any) -> None:
        self._messages.put(("message", message))

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def raise_if_cancelled(self) -> None:
        if self._cancel.is_set():
            raise JobCancelled()

    def wait(self, seconds: float) -> None:
        """Sleep in the worker, waking early (and raising) on cancel."""
        if self._cancel.wait(seconds):
            raise JobCancelled()

    def _run(self) -> None:
        try:
            result = self.work(self)
        except JobCancelled:
            self._messages.put(("cancelled", None))
        except Exception as error:  # the work's own errors are reported, never lost in a thread
            sentence = str(error).strip() or type(error).__name__
            # Engine and input errors already read as sentences; anything else is a bug worth a trace.
            if not isinstance(error, (EngineError, ValueError, OSError)):
                traceback.print_exc()
            self._messages.put(("error", sentence))
        else:
            self._messages.put(("done", result))

    # -- main-thread side ----------------------------------------------------------------------

    def start(self) -> "BackgroundJob":
        self.state = "running"
        _latest[self.name] = self
        self._thread = threading.Thread(target=self._run, name=f"dimo-{self.name}", daemon=True)
        self._thread.start()
        _active_jobs.append(self)
        _ensure_timer()
        return self

    def request_cancel(self) -> None:
        self._cancel.set()

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed", "cancelled")

    def poll(self) -> bool:
        """Apply queued messages (bounded in time); returns True once the job has finished."""
        deadline = time.perf_counter() + MAX_DRAIN_S
        while not self.finished and time.perf_counter() < deadline:
            try:
                kind, payload = self._messages.get_nowait()
            except queue.Empty:
                break
            try:
                if kind == "message":
                    if self.on_message:
                        self.on_message(self, payload)
                elif kind == "done":
                    self.state, self.result = "done", payload
                    if self.on_done:
                        self.on_done(self, payload)
                elif kind == "cancelled":
                    self.state = "cancelled"
                    if self.on_cancelled:
                        self.on_cancelled(self)
                else:
                    self.state, self.error = "failed", payload
                    if self.on_error:
                        self.on_error(self, payload)
            except Exception as error:  # a failing handler must not kill the timer for every job
                traceback.print_exc()
                self.state, self.error = "failed", f"Could not apply the result of {self.name}: {error}"
                if self.on_error and kind != "error":
                    self.on_error(self, self.error)
        return self.finished

    def join(self, timeout: float | None = None) -> None:
        """Tests and shutdown only: wait for the worker thread."""
        if self._thread is not None:
            self._thread.join(timeout)


class StepsJob(BackgroundJob):
    """Main-thread work: `steps` is a generator of (done, total); each `poll` runs one step and hands
    (done, total) to `on_message`. A cancel closes the generator, which runs its clean-up (nothing
    half-written stays). Only its owner polls it (the modal operator's timer, or `run_to_end`)."""

    def __init__(self, name: str, steps, **handlers):
        super().__init__(name, work=None, **handlers)
        self._steps = steps

    def start(self) -> "StepsJob":
        self.state = "running"
        _latest[self.name] = self
        return self

    def poll(self) -> bool:
        if self.finished:
            return True
        try:
            if self._cancel.is_set():
                self._steps.close()
                self.state = "cancelled"
                if self.on_cancelled:
                    self.on_cancelled(self)
                return True
            try:
                done, total = next(self._steps)
            except StopIteration:
                self.state = "done"
                if self.on_done:
                    self.on_done(self, None)
                return True
            if self.on_message:
                self.on_message(self, (done, total))
        except Exception as error:  # a failing step is reported as a sentence, like a worker's error
            if not isinstance(error, (ValueError, RuntimeError, OSError)):
                traceback.print_exc()
            self._steps.close()
            self.state, self.error = "failed", str(error).strip() or type(error).__name__
            if self.on_error:
                self.on_error(self, self.error)
        return self.finished

    def run_to_end(self) -> "StepsJob":
        """Every step at once (scripts, background mode: no window to drive a timer)."""
        self.start()
        while not self.poll():
            pass
        return self

    def join(self, timeout: float | None = None) -> None:
        pass  # no thread: a main-thread job stops when its owner stops polling it


_active_jobs: list[BackgroundJob] = []  # jobs the shared timer polls
_latest: dict[str, BackgroundJob] = {}  # the last job started under each name, finished or not


def active_jobs() -> list[BackgroundJob]:
    return list(_active_jobs)


def latest_job(name: str) -> BackgroundJob | None:
    return _latest.get(name)


def is_running(name: str) -> bool:
    job = _latest.get(name)
    return job is not None and not job.finished


def tick() -> float | None:
    """The timer callback: poll every job, forget finished ones; None unregisters the timer."""
    for job in list(_active_jobs):
        if job.poll():
            _active_jobs.remove(job)
    return TIMER_INTERVAL_S if _active_jobs else None


def _ensure_timer() -> None:
    try:
        import bpy
    except ImportError:  # plain Python (tests of the mechanism): the caller ticks
        return
    if not bpy.app.timers.is_registered(tick):
        bpy.app.timers.register(tick, first_interval=TIMER_INTERVAL_S, persistent=True)


def cancel_all(timeout: float = 2.0) -> None:
    """On unregister: ask every job to stop and let their threads end."""
    for job in [*_active_jobs, *_latest.values()]:
        job.request_cancel()
    for job in list(_active_jobs):
        job.join(timeout)
    _active_jobs.clear()
    _latest.clear()
    try:
        import bpy

        if bpy.app.timers.is_registered(tick):
            bpy.app.timers.unregister(tick)
    except ImportError:
        pass
