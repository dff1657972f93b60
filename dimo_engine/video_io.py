"""Reading driving videos and reference images, writing generated frames (PNG sequences, MP4).

Every bad file becomes one `InputError` sentence that names the file and the fix; every
written file goes to a temporary name first and is renamed, so readers never see half a frame.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np
from PIL import Image, UnidentifiedImageError

from blender_addon.core.atomic_io import atomic_write
from dimo_engine.errors import InputError

VIDEO_SUFFIXES = (".mp4", ".mov", ".webm", ".gif", ".mkv", ".avi", ".m4v")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
# Containers whose codecs can carry an alpha channel (ProRes 4444, PNG-in-MOV, VP9 alpha).
_ALPHA_VIDEO_SUFFIXES = (".mov", ".webm", ".mkv", ".avi")

MAX_SIDE = 8192  # same bound as camera path files: anything larger is a mistake, not a video
MAX_FRAMES = 100_000
DEFAULT_FOLDER_FPS = 24.0

_VIDEO_HELP = "export it again as MP4 (H.264), MOV, WebM or GIF, or give a folder of PNG/JPEG images"


def read_video(
    path: str | os.PathLike,
    fps: float | None = None,
    max_side: int = MAX_SIDE,
    max_frames: int = MAX_FRAMES,
) -> tuple[np.ndarray, float]:
    """Decode a video file or a folder of images whole, at its own size and rate, into
    `(frames uint8 (F, H, W, C), fps)`.

    C is 4 when the source has a real alpha channel (GIF or PNG transparency, alpha codecs),
    else 3. `fps` overrides the file's own rate; folders of images default to 24 fps.
    """
    clip = read_video_clip(path, fps=fps, max_side=max_side, max_frames=max_frames)
    return clip.frames, clip.fps


@dataclasses.dataclass
class VideoClip:
    """Decoded frames `(F, H, W, C)` uint8 at `fps`, and the source they came from: `source_frames`
    frames at `source_fps`, `source_size` (width, height)."""

    frames: np.ndarray
    fps: float
    source_frames: int
    source_fps: float
    source_size: tuple[int, int]


def read_video_clip(
    path: str | os.PathLike,
    fps: float | None = None,
    max_side: int = MAX_SIDE,
    max_frames: int = MAX_FRAMES,
    model_fps: float | None = None,
    fit_side: int | None = None,
    max_model_frames: int | None = None,
) -> VideoClip:
    """Decode a video file or a folder of images as a stream, keeping only what a model can use.

    With `model_fps`, a faster source keeps only the frames `resample_indices` picks at the model's
    rate (the clip's fps is then `model_fps`); with `fit_side`, frames are scaled down while they are
    read so the longer side is at most that; with `max_model_frames`, a clip longer than that at the
    model's rate is refused, from its length in the file's header before any frame is decoded.
    Memory is the kept frames, once: never the whole clip at full size.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"driving video {path} does not exist; check the path")
    plan = _Sampling(model_fps, fit_side, max_model_frames, str(path))
    if path.is_dir():
        return _read_image_folder(path, float(fps or DEFAULT_FOLDER_FPS), max_side, max_frames, plan)
    if path.stat().st_size == 0:
        raise InputError(f"driving video {path} is an empty file; {_VIDEO_HELP}")
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        raise InputError(still_image_message(f"driving video {path}"))
    if suffix == ".gif":
        return _read_gif(path, fps, max_side, max_frames, plan)
    if suffix in VIDEO_SUFFIXES:
        return _read_ffmpeg(path, fps, max_side, max_frames, plan)
    raise InputError(f"driving video {path} has the unsupported type '{suffix or 'none'}'; {_VIDEO_HELP}")


def resample_indices(source_frames: int, source_fps: float, target_fps: float) -> np.ndarray:
    """Indices of the source frames shown at each tick of `target_fps` over the source's duration."""
    count = max(1, int(np.ceil(source_frames * target_fps / source_fps - 1e-6)))
    ticks = np.arange(count) / target_fps
    return np.minimum(np.floor(ticks * source_fps + 1e-6).astype(int), source_frames - 1)


def fitted_size(width: int, height: int, fit_side: int | None) -> tuple[int, int]:
    """(width, height) scaled down, aspect kept, so the longer side is at most `fit_side` (never up)."""
    if fit_side is None or max(width, height) <= fit_side:
        return width, height
    scale = fit_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


class _Sampling:
    """Which source frames a reader keeps, at what size, and how many it may keep."""

    def __init__(self, model_fps: float | None, fit_side: int | None, max_model_frames: int | None, name: str):
        self.model_fps = model_fps
        self.fit_side = fit_side
        self.max_model_frames = max_model_frames
        self.name = name

    def output_fps(self, source_fps: float) -> float:
        return float(self.model_fps) if self.model_fps and source_fps > self.model_fps else float(source_fps)

    def keeps(self, source_fps: float):
        """A test `index -> bool` over source frames in order: the frames `resample_indices` picks."""
        if not self.model_fps or source_fps <= self.model_fps:
            return lambda index: True
        ratio = source_fps / float(self.model_fps)
        next_tick = [0]

        def keep(index: int) -> bool:
            if int(np.floor(next_tick[0] * ratio + 1e-6)) != index:
                return False
            next_tick[0] += 1
            return True

        return keep

    def check_length(self, seconds: float | None, kept: int | None = None) -> None:
        """Refuse a clip lasting `seconds` (from a header), or one that has reached `kept` frames, over the limit."""
        if not self.max_model_frames or not self.model_fps:
            return
        fps = float(self.model_fps)
        limit_s = self.max_model_frames / fps
        if seconds is not None and seconds > 0:
            count = int(np.ceil(seconds * fps - 1e-6))
            if count <= self.max_model_frames:
                return
            length = f"lasts {seconds:.1f} s, {count} frames at the model's {fps:g} fps"
        elif kept is not None and kept > self.max_model_frames:
            length = f"lasts more than {self.max_model_frames} frames at the model's {fps:g} fps"
        else:
            return
        raise InputError(f"driving video {self.name} {length}, more than the {self.max_model_frames} frames "
                         f"({limit_s:g} s) one job can generate; trim it to at most {limit_s:g} s, or split it "
                         f"into several jobs")

    def capacity(self, seconds: float | None, source_fps: float, max_frames: int) -> int:
        """How many frames to make room for at first: the header's length, bounded by the limits."""
        bound = max_frames if not self.max_model_frames else min(max_frames, self.max_model_frames + 1)
        if seconds is None or seconds <= 0:
            return min(bound, 64)
        return max(2, min(bound, int(np.ceil(seconds * self.output_fps(source_fps))) + 2))


class _FrameStack:
    """Frames appended one by one into one preallocated array (grown by half when a header was short),
    so the clip is never held twice, as a list and as its stack."""

    def __init__(self, capacity: int, shape: tuple[int, int, int]):
        self.frames = np.empty((max(1, capacity),) + shape, np.uint8)  # (F, H, W, C)
        self.count = 0

    def append(self, frame: np.ndarray) -> None:
        if self.count == self.frames.shape[0]:
            grown = np.empty((self.count + max(1, self.count // 2),) + self.frames.shape[1:], np.uint8)
            grown[: self.count] = self.frames
            self.frames = grown
        self.frames[self.count] = frame
        self.count += 1

    def result(self) -> np.ndarray:
        return self.frames[: self.count]


def still_image_message(what: str) -> str:
    return (f"{what} is a still image, not a video, and motion needs a moving clip; give a video, or a folder "
            f"(or zip) of at least 2 frames")


def read_image(path: str | os.PathLike, max_side: int = MAX_SIDE, what: str = "reference image") -> np.ndarray:
    """Read one image as uint8 `(H, W, C)`, C = 3, or 4 when it has transparency."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} {path} does not exist; check the path")
    try:
        with Image.open(path) as image:
            _check_size(path, image.width, image.height, max_side, what)
            has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
            pixels = np.asarray(image.convert("RGBA" if has_alpha else "RGB"))
    except InputError:
        raise
    except Image.DecompressionBombError:
        # Raised by Image.open before the size is known to us: it is a size problem, not a format one.
        raise InputError(f"{what} {path} has more pixels than images may have here (over "
                         f"{2 * Image.MAX_IMAGE_PIXELS // 1_000_000} million); scale it down to at most {max_side} px "
                         f"a side") from None
    except (OSError, ValueError) as error:
        # Pillow's own words repeat the path; the sentence names the file once, at its start.
        reason = "not a known image format" if isinstance(error, UnidentifiedImageError) else \
            _short(str(error).replace(str(path), path.name))
        raise InputError(f"{what} {path} cannot be read as an image ({reason}); save it again as PNG or JPEG") from error
    return pixels


def _check_size(path: Path, width: int, height: int, max_side: int, what: str) -> None:
    if width < 1 or height < 1:
        raise InputError(f"{what} {path} has no pixels ({width}x{height}); {_VIDEO_HELP}")
    if max(width, height) > max_side:
        raise InputError(
            f"{what} {path} is {width}x{height} pixels, larger than the {max_side} px limit; scale it down first"
        )


def _short(error: BaseException | str) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def _fit(pixels: np.ndarray, fit_side: int | None) -> np.ndarray:
    """uint8 (H, W, C) scaled down (area average) so the longer side is at most `fit_side`."""
    height, width = pixels.shape[:2]
    size = fitted_size(width, height, fit_side)
    if size == (width, height):
        return pixels
    return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BOX))


def _read_image_folder(folder: Path, fps: float, max_side: int, max_frames: int, plan: _Sampling) -> VideoClip:
    names = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    if not names:
        raise InputError(f"driving folder {folder} holds no PNG/JPEG images; put the frames there as 0000.png, 0001.png, ...")
    if len(names) > max_frames:
        raise InputError(f"driving folder {folder} holds {len(names)} images, more than the {max_frames} frame limit; shorten it")
    plan.check_length(len(names) / fps)
    kept = [names[i] for i in resample_indices(len(names), fps, plan.model_fps)] \
        if plan.model_fps and fps > plan.model_fps else names
    # Headers only (Pillow opens lazily): sizes and alpha are known before any pixels are decoded.
    shapes, has_alpha = set(), False
    for name in kept:
        try:
            with Image.open(name) as image:
                shapes.add((image.height, image.width))
                has_alpha |= image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
        except (OSError, ValueError, Image.DecompressionBombError):
            read_image(name, max_side, what="driving frame")  # says what is wrong with it
    if len(shapes) > 1:
        raise InputError(f"driving folder {folder} mixes image sizes {sorted(shapes)}; give frames of one size")
    (height, width), = shapes
    out_width, out_height = fitted_size(width, height, plan.fit_side)
    channels = 4 if has_alpha else 3
    stack = _FrameStack(len(kept), (out_height, out_width, channels))
    for name in kept:
        frame = _fit(read_image(name, max_side, what="driving frame"), plan.fit_side)
        if frame.shape[2] < channels:
            frame = np.concatenate([frame, np.full(frame.shape[:2] + (1,), 255, np.uint8)], -1)
        stack.append(frame)
    return VideoClip(stack.result(), plan.output_fps(fps), len(names), fps, (width, height))


def _read_gif(path: Path, fps: float | None, max_side: int, max_frames: int, plan: _Sampling) -> VideoClip:
    try:
        with Image.open(path) as image:
            _check_size(path, image.width, image.height, max_side, "driving video")
            count = getattr(image, "n_frames", 1)
            if count > max_frames:
                raise InputError(f"driving video {path} has {count} frames, more than the {max_frames} frame limit; shorten it")
            durations = []
            for index in range(count):  # seeking reads frame headers; no frame is kept
                image.seek(index)
                durations.append(image.info.get("duration", 100) or 100)
            source_fps = float(fps or 1000.0 / float(np.mean(durations)))
            plan.check_length(count / source_fps)
            kept = resample_indices(count, source_fps, plan.model_fps) \
                if plan.model_fps and source_fps > plan.model_fps else range(count)
            out_width, out_height = fitted_size(image.width, image.height, plan.fit_side)
            stack = _FrameStack(len(kept), (out_height, out_width, 4))
            for index in kept:
                image.seek(int(index))
                stack.append(_fit(np.asarray(image.convert("RGBA")), plan.fit_side))
            source_size = (image.width, image.height)
    except InputError:
        raise
    except Image.DecompressionBombError:
        raise InputError(f"driving video {path} has more pixels per frame than images may have here; scale it down "
                         f"to at most {max_side} px a side") from None
    except (OSError, ValueError, EOFError) as error:
        raise InputError(f"driving video {path} cannot be read as a GIF ({_short(error)}); {_VIDEO_HELP}") from error
    frames = stack.result()  # (F, H, W, 4)
    if (frames[..., 3] == 255).all():
        frames = frames[..., :3]
    return VideoClip(frames, plan.output_fps(source_fps), count, source_fps, source_size)


def scale_filter(fit_side: int) -> list[str]:
    """ffmpeg output options scaling frames down (area average, aspect kept) to at most `fit_side` a side."""
    return ["-vf", f"scale=w='min(iw,{fit_side})':h='min(ih,{fit_side})':force_original_aspect_ratio=decrease"
                   f":flags=area"]


class _DifferentSizeNotice(logging.Filter):
    # imageio-ffmpeg warns when the frames it hands over differ in size from the file's: here that is the point.
    def filter(self, record: logging.LogRecord) -> bool:
        return "different from the source frame size" not in record.getMessage()


logging.getLogger("imageio_ffmpeg").addFilter(_DifferentSizeNotice())


def _read_ffmpeg(path: Path, fps: float | None, max_side: int, max_frames: int, plan: _Sampling) -> VideoClip:
    pix_fmt = "rgba" if path.suffix.lower() in _ALPHA_VIDEO_SUFFIXES else "rgb24"
    channels = 4 if pix_fmt == "rgba" else 3
    reader = None
    source_frames = 0
    try:
        reader = imageio_ffmpeg.read_frames(str(path), pix_fmt=pix_fmt, bits_per_pixel=8 * channels,
                                            output_params=scale_filter(plan.fit_side) if plan.fit_side else None)
        meta = next(reader)  # the header: nothing is decoded into memory yet
        width, height = meta["size"]
        source_size = tuple(meta.get("source_size") or meta["size"])
        _check_size(path, *source_size, max_side, "driving video")
        source_fps = float(fps or meta.get("fps") or 0.0)
        known_fps = np.isfinite(source_fps) and source_fps > 0
        duration = float(meta.get("duration") or 0.0)
        plan.check_length(duration)
        keep = plan.keeps(source_fps) if known_fps else (lambda index: True)
        stack = _FrameStack(plan.capacity(duration, source_fps if known_fps else 1.0, max_frames),
                            (height, width, channels))
        for buffer in reader:
            if source_frames >= max_frames:
                raise InputError(f"driving video {path} has more than {max_frames} frames; shorten it")
            if keep(source_frames):
                stack.append(np.frombuffer(buffer, np.uint8).reshape(height, width, channels))
                plan.check_length(None, stack.count)
            source_frames += 1
    except InputError:
        raise
    except (OSError, RuntimeError, ValueError, StopIteration, KeyError) as error:
        # ffmpeg's own message is pages of stderr; the person needs to know the file is not a video.
        raise InputError(f"driving video {path} cannot be decoded (truncated, or not a video at all); {_VIDEO_HELP}") from error
    finally:
        if reader is not None:
            reader.close()
    if source_frames == 0:
        raise InputError(f"driving video {path} has zero frames; {_VIDEO_HELP}")
    if source_frames == 1:  # e.g. a PNG or JPEG renamed .mp4: ffmpeg reads it as a one-frame video
        raise InputError(still_image_message(f"driving video {path}"))
    if not known_fps:
        raise InputError(f"driving video {path} does not say its frame rate; {_VIDEO_HELP}")
    frames = stack.result()  # (F, H, W, C)
    if channels == 4 and (frames[..., 3] == 255).all():
        frames = frames[..., :3]
    return VideoClip(frames, plan.output_fps(source_fps), source_frames, source_fps, source_size)


def write_png(image: np.ndarray, path: str | os.PathLike) -> Path:
    """Write one uint8 `(H, W, C)` image as PNG atomically."""
    path = Path(path)
    with atomic_write(path) as temporary:
        iio.imwrite(temporary, np.ascontiguousarray(image), extension=".png")
    return path


def write_png_sequence(frames: np.ndarray, folder: str | os.PathLike, start: int = 0) -> list[str]:
    """Write frames `(F, H, W, C)` (uint8, or float in [0, 1]) as `0000.png, 0001.png, ...`, each atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for offset, frame in enumerate(to_uint8(frames)):
        name = f"{start + offset:04d}.png"
        write_png(frame, folder / name)
        names.append(name)
    return names


def write_video(frames: np.ndarray, path: str | os.PathLike, fps: float) -> Path:
    """Write frames `(F, H, W, 3)` as an H.264 MP4 atomically."""
    path = Path(path)
    frames = to_uint8(frames)[..., :3]
    height, width = frames.shape[1:3]
    with atomic_write(path) as temporary:
        writer = imageio_ffmpeg.write_frames(
            str(temporary), (width, height), fps=float(fps), codec="libx264", macro_block_size=2,
            ffmpeg_log_level="error",
        )
        writer.send(None)
        for frame in frames:
            writer.send(np.ascontiguousarray(frame))
        writer.close()
    return path


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """Frames as uint8: float input is taken as [0, 1] and clipped."""
    frames = np.asarray(frames)
    if frames.dtype == np.uint8:
        return frames
    return (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
