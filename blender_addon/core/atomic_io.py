"""Files and folders that appear whole or not at all: everything is written under a temporary name
beside its final place and renamed there when complete, so a reader (or a run killed half-way) never
sees half a file. The one atomic writer of the add-on, the engine and training; the standard library
and numpy only.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np


def temporary_sibling(path: str | os.PathLike, tag: str = "partial") -> Path:
    """A fresh hidden name in `path`'s folder (so the rename is atomic) that keeps its suffix (so writers
    that choose the format by the name still do) and is unique to this call (so processes writing the
    same file at once stay apart): `.camera.json.<pid>-<random>.partial.json`."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.{tag}{path.suffix}")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, fsync: bool = False) -> Iterator[Path]:
    """Write `path` whole or not at all: the block writes the temporary path it is given, which replaces
    `path` when the block ends; when the block raises, the temporary file goes and `path` is as it was.
    `fsync` flushes the file to disk before the rename (for files that must survive a power cut)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_sibling(path)
    try:
        yield temporary
        if fsync:
            descriptor = os.open(temporary, os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_write(path) as temporary:
        temporary.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    with atomic_write(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomic(path: str | os.PathLike, payload, **dumps_options) -> Path:
    """`payload` as JSON (indent 1 unless told otherwise) with a final newline."""
    dumps_options.setdefault("indent", 1)
    return write_text_atomic(path, json.dumps(payload, **dumps_options) + "\n")


def write_npz_atomic(path: str | os.PathLike, arrays: dict, compressed: bool = False) -> Path:
    """`arrays` as an `.npz` file (`np.savez`, or `np.savez_compressed` when `compressed`)."""
    with atomic_write(path) as temporary:
        (np.savez_compressed if compressed else np.savez)(temporary, **arrays)
    return Path(path)


def replace_folder(complete: str | os.PathLike, folder: str | os.PathLike, aside: str | os.PathLike | None = None) -> Path:
    """Put the complete folder `complete` (a sibling of `folder`) in `folder`'s place. An earlier `folder`
    is moved aside first (to `aside`, by default a fresh hidden sibling) and removed last, so a failure in
    between leaves the old one or the new one."""
    complete, folder = Path(complete), Path(folder)
    previous = None
    if folder.exists():
        previous = temporary_sibling(folder, "old") if aside is None else Path(aside)
        os.replace(folder, previous)
    os.replace(complete, folder)
    if previous is not None:
        shutil.rmtree(previous, ignore_errors=True)
    return folder


@contextlib.contextmanager
def atomic_folder(folder: str | os.PathLike) -> Iterator[Path]:
    """Write the folder `folder` whole or not at all: the block fills the new, empty temporary folder it is
    given, which replaces `folder` (see `replace_folder`) when the block ends; when the block raises, the
    temporary folder goes and `folder` is as it was."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_sibling(folder)
    temporary.mkdir()
    try:
        yield temporary
        replace_folder(temporary, folder)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
