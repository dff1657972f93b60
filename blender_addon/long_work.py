"""The one way the add-on runs long work: a background thread, a queue to the main thread, and a
`bpy.app.timers` callback (or a modal operator's timer) that drains it.

Work functions run off the main thread and must not touch `bpy`; they `post` messages, which the
main thread applies in small, fast handlers. This keeps every main-thread step far below 50 ms.
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
        work: Callable[["BackgroundJob"], Any],
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


_active_jobs: list[BackgroundJob] = []


def active_jobs() -> list[BackgroundJob]:
    return list(_active_jobs)


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
    for job in list(_active_jobs):
        job.request_cancel()
    for job in list(_active_jobs):
        job.join(timeout)
    _active_jobs.clear()
    try:
        import bpy

        if bpy.app.timers.is_registered(tick):
            bpy.app.timers.unregister(tick)
    except ImportError:
        pass
