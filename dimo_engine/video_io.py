"""Reading driving videos and reference images, writing generated frames (PNG sequences, MP4).

Every bad file becomes one `InputError` sentence that names the file and the fix; every
written file goes to a temporary name first and is renamed, so readers never see half a frame.
"""

from __future__ import annotations

import os
from pathlib import Path

import imageio.v3 as iio
import imageio_ffmpeg
import numpy as np
from PIL import Image, UnidentifiedImageError

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
    """Decode a video file or a folder of images into `(frames uint8 (F, H, W, C), fps)`.

    C is 4 when the source has a real alpha channel (GIF or PNG transparency, alpha codecs),
    else 3. `fps` overrides the file's own rate; folders of images default to 24 fps.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"driving video {path} does not exist; check the path")
    if path.is_dir():
        frames = _read_image_folder(path, max_side, max_frames)
        return frames, float(fps or DEFAULT_FOLDER_FPS)
    if path.stat().st_size == 0:
        raise InputError(f"driving video {path} is an empty file; {_VIDEO_HELP}")
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        raise InputError(still_image_message(f"driving video {path}"))
    if suffix == ".gif":
        frames, file_fps = _read_gif(path, max_side, max_frames)
    elif suffix in VIDEO_SUFFIXES:
        frames, file_fps = _read_ffmpeg(path, max_side, max_frames)
    else:
        raise InputError(f"driving video {path} has the unsupported type '{suffix or 'none'}'; {_VIDEO_HELP}")
    return frames, float(fps or file_fps)


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


def _read_image_folder(folder: Path, max_side: int, max_frames: int) -> np.ndarray:
    names = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    if not names:
        raise InputError(f"driving folder {folder} holds no PNG/JPEG images; put the frames there as 0000.png, 0001.png, ...")
    if len(names) > max_frames:
        raise InputError(f"driving folder {folder} holds {len(names)} images, more than the {max_frames} frame limit; shorten it")
    frames = [read_image(name, max_side, what="driving frame") for name in names]
    shapes = {frame.shape[:2] for frame in frames}
    if len(shapes) > 1:
        raise InputError(f"driving folder {folder} mixes image sizes {sorted(shapes)}; give frames of one size")
    channels = max(frame.shape[2] for frame in frames)
    if channels == 4:
        frames = [f if f.shape[2] == 4 else np.concatenate([f, np.full(f.shape[:2] + (1,), 255, np.uint8)], -1) for f in frames]
    return np.stack(frames)  # (F, H, W, C)


def _read_gif(path: Path, max_side: int, max_frames: int) -> tuple[np.ndarray, float]:
    try:
        with Image.open(path) as image:
            _check_size(path, image.width, image.height, max_side, "driving video")
            count = getattr(image, "n_frames", 1)
            if count > max_frames:
                raise InputError(f"driving video {path} has {count} frames, more than the {max_frames} frame limit; shorten it")
            frames, durations = [], []
            for index in range(count):
                image.seek(index)
                frames.append(np.asarray(image.convert("RGBA")))
                durations.append(image.info.get("duration", 100) or 100)
    except InputError:
        raise
    except Image.DecompressionBombError:
        raise InputError(f"driving video {path} has more pixels per frame than images may have here; scale it down "
                         f"to at most {max_side} px a side") from None
    except (OSError, ValueError, EOFError) as error:
        raise InputError(f"driving video {path} cannot be read as a GIF ({_short(error)}); {_VIDEO_HELP}") from error
    stack = np.stack(frames)  # (F, H, W, 4)
    if (stack[..., 3] == 255).all():
        stack = stack[..., :3]
    return stack, 1000.0 / float(np.mean(durations))


def _read_ffmpeg(path: Path, max_side: int, max_frames: int) -> tuple[np.ndarray, float]:
    pix_fmt = "rgba" if path.suffix.lower() in _ALPHA_VIDEO_SUFFIXES else "rgb24"
    channels = 4 if pix_fmt == "rgba" else 3
    reader = None
    try:
        reader = imageio_ffmpeg.read_frames(str(path), pix_fmt=pix_fmt, bits_per_pixel=8 * channels)
        meta = next(reader)
        width, height = meta["size"]
        _check_size(path, width, height, max_side, "driving video")
        fps = float(meta.get("fps") or 0.0)
        frames = []
        for buffer in reader:
            if len(frames) >= max_frames:
                raise InputError(f"driving video {path} has more than {max_frames} frames; shorten it")
            frames.append(np.frombuffer(buffer, np.uint8).reshape(height, width, channels))
    except InputError:
        raise
    except (OSError, RuntimeError, ValueError, StopIteration, KeyError) as error:
        # ffmpeg's own message is pages of stderr; the person needs to know the file is not a video.
        raise InputError(f"driving video {path} cannot be decoded (truncated, or not a video at all); {_VIDEO_HELP}") from error
    finally:
        if reader is not None:
            reader.close()
    if not frames:
        raise InputError(f"driving video {path} has zero frames; {_VIDEO_HELP}")
    if len(frames) == 1:  # e.g. a PNG or JPEG renamed .mp4: ffmpeg reads it as a one-frame video
        raise InputError(still_image_message(f"driving video {path}"))
    if not np.isfinite(fps) or fps <= 0:
        raise InputError(f"driving video {path} does not say its frame rate; {_VIDEO_HELP}")
    stack = np.stack(frames)  # (F, H, W, C)
    if channels == 4 and (stack[..., 3] == 255).all():
        stack = stack[..., :3]
    return stack, fps


def _temporary_name(path: Path) -> Path:
    # Same folder (so the rename is atomic), hidden, and keeps the suffix so writers pick the format.
    return path.with_name(f".{path.stem}.{os.getpid()}.partial{path.suffix}")


def write_png(image: np.ndarray, path: str | os.PathLike) -> Path:
    """Write one uint8 `(H, W, C)` image as PNG atomically."""
    path = Path(path)
    temporary = _temporary_name(path)
    try:
        iio.imwrite(temporary, np.ascontiguousarray(image), extension=".png")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
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
    temporary = _temporary_name(path)
    try:
        writer = imageio_ffmpeg.write_frames(
            str(temporary), (width, height), fps=float(fps), codec="libx264", macro_block_size=2,
            ffmpeg_log_level="error",
        )
        writer.send(None)
        for frame in frames:
            writer.send(np.ascontiguousarray(frame))
        writer.close()
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """Frames as uint8: float input is taken as [0, 1] and clipped."""
    frames = np.asarray(frames)
    if frames.dtype == np.uint8:
        return frames
    return (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
