"""Motion files: the motion tokens `dimo encode-motion` saves (`.safetensors`), read back for `dimo generate
--motion` and the service's `motion` upload (and its motion cache), with errors that say how to make one.
"""

from __future__ import annotations

import os
from pathlib import Path

from dimo_engine.errors import InputError


def motion_num_frames(motion) -> int:
    return int(motion.body.shape[1])


def load_motion_file(path: str | os.PathLike, what: str = "motion file"):
    """MotionTokens from a `.safetensors` written by `dimo encode-motion`, or a clear InputError."""
    from dimo_engine.pipelines import MotionTokens

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} {path} does not exist; run 'dimo encode-motion VIDEO --out {path.name}' first")
    try:
        return MotionTokens.load(path)
    except InputError:
        raise
    except Exception as error:  # safetensors raises its own types for truncated or foreign files
        raise InputError(f"{what} {path.name} is not a motion file written by 'dimo encode-motion' "
                         f"({type(error).__name__}); encode the driving video again") from error
