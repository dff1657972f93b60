"""A real pipeline wrapped to count what is asked of it, for tests of the code that drives pipelines."""

from __future__ import annotations

import time


class CountingPipeline:
    """The wrapped pipeline, counting its calls, `encode_motion` and `encode_reference`; `step_delay` seconds of
    sleep at every denoising step make a job slow enough to watch or cancel."""

    def __init__(self, pipe):
        self._pipe = pipe
        self.calls = 0
        self.encode_calls = 0
        self.reference_encodings = 0
        self.step_delay = 0.0

    def __getattr__(self, name):
        return getattr(self._pipe, name)

    def encode_motion(self, *args, **kwargs):
        self.encode_calls += 1
        return self._pipe.encode_motion(*args, **kwargs)

    def encode_reference(self, *args, **kwargs):
        self.reference_encodings += 1
        return self._pipe.encode_reference(*args, **kwargs)

    def __call__(self, *args, callback_on_step_end=None, **kwargs):
        self.calls += 1

        def slowed(pipe, step, timestep, callback_kwargs):
            time.sleep(self.step_delay)
            if callback_on_step_end is None:
                return callback_kwargs
            return callback_on_step_end(pipe, step, timestep, callback_kwargs)

        return self._pipe(*args, callback_on_step_end=slowed, **kwargs)
