"""The clip dataset format (docs/formats.md): its names and version, and the writer of one clip,
which fills `<split>/.clip_<index>.partial/` and renames it to `<split>/clip_<index>` when complete,
so a `clip_*` folder is always whole. Numpy and the standard library only (PNG encoded with zlib),
so it runs inside Blender and in the engine's planner alike.
"""

from __future__ import annotations

import os
import shutil
import struct
import zlib

import numpy as np

from .atomic_io import replace_folder, write_bytes_atomic, write_json_atomic, write_npz_atomic

DATASET_FORMAT = "dimo-clip-dataset"
CLIP_FORMAT = "dimo-clip"
FORMAT_VERSION = 1


def clip_name(index: int) -> str:
    return f"clip_{int(index):06d}"


def clip_path(root: str, split: str, index: int) -> str:
    return os.path.join(root, split, clip_name(index))


def is_clip_complete(root: str, split: str, index: int) -> bool:
    return os.path.isfile(os.path.join(clip_path(root, split, index), "manifest.json"))


def encode_png(rgba: np.ndarray) -> bytes:
    """PNG bytes of an (H, W, 4) or (H, W, 3) uint8 image."""
    rgba = np.ascontiguousarray(rgba, dtype=np.uint8)
    height, width, channels = rgba.shape
    colour_type = {3: 2, 4: 6}[channels]
    rows = np.concatenate([np.zeros((height, 1), np.uint8), rgba.reshape(height, width * channels)], axis=1)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)) + chunk(b"IEND", b"")


class ClipWriter:
    """Collects one clip's files in a partial folder; `commit()` makes it visible as complete."""

    def __init__(self, root: str, split: str, index: int):
        self.final_path = clip_path(root, split, index)
        self.path = os.path.join(root, split, f".{clip_name(index)}.partial")
        # A leftover partial folder is from a killed render: start that clip again from nothing.
        shutil.rmtree(self.path, ignore_errors=True)
        os.makedirs(os.path.join(self.path, "views"))

    def view_path(self, view_name: str) -> str:
        path = os.path.join(self.path, "views", view_name)
        os.makedirs(os.path.join(path, "frames"), exist_ok=True)
        return path

    def write_frame(self, view_name: str, frame_index: int, rgba: np.ndarray) -> None:
        write_bytes_atomic(os.path.join(self.view_path(view_name), "frames", f"{frame_index:04d}.png"), encode_png(rgba))

    def write_background(self, view_name: str, frame_index: int, set_rgb: np.ndarray) -> None:
        """The set without the person (float (H, W, 3) in [0, 1]) as background/NNNN.png: benchmark clips'
        known background, against which a generated frame's foreground is found."""
        folder = os.path.join(self.view_path(view_name), "background")
        os.makedirs(folder, exist_ok=True)
        rgb = np.clip(np.rint(np.asarray(set_rgb) * 255.0), 0, 255).astype(np.uint8)
        write_bytes_atomic(os.path.join(folder, f"{frame_index:04d}.png"), encode_png(rgb))

    def write_camera(self, view_name: str, camera_dict: dict) -> None:
        write_json_atomic(os.path.join(self.view_path(view_name), "camera.json"), camera_dict)

    def write_annotations(self, view_name: str, **arrays) -> None:
        write_npz_atomic(os.path.join(self.view_path(view_name), "annotations.npz"), arrays, compressed=True)

    def write_motion(self, **arrays) -> None:
        write_npz_atomic(os.path.join(self.path, "motion.npz"), arrays, compressed=True)

    def commit(self, manifest: dict) -> str:
        """Write the manifest last and rename the folder; returns the final clip path."""
        write_json_atomic(os.path.join(self.path, "manifest.json"), manifest)
        replace_folder(self.path, self.final_path)
        return self.final_path

    def abandon(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
