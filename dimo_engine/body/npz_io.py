"""Atomic `.npz` writing for the body model and motion files: a temporary name, then a rename,
so a reader never sees half a file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def write_npz_atomic(path: str | os.PathLike, arrays: dict[str, np.ndarray], compressed: bool = False) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial.npz")
    try:
        (np.savez_compressed if compressed else np.savez)(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
