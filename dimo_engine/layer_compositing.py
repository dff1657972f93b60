"""Flat frames from a character layer: the RGBA frames the default model makes, over a colour or a picture.

The layer itself is what the add-on shows over the scene camera's view; `dimo generate --background` and the
MP4s use this when a user wants flat frames.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageColor

from dimo_engine.errors import InputError

DEFAULT_BACKGROUND = "#808080"  # the plain grey the models use for "no person"


def background_plate(spec: str, width: int, height: int) -> np.ndarray:
    """A background `(H, W, 3)` float in [0, 1] from a colour ('grey', '#336699', '0.2,0.4,0.6') or an image path
    (scaled to cover the frame)."""
    text = str(spec).strip()
    path = Path(text).expanduser()
    if path.is_file():
        try:
            with Image.open(path) as image:
                image = image.convert("RGB")
                scale = max(width / image.width, height / image.height)
                size = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
                image = image.resize(size, Image.Resampling.LANCZOS)
                left, top = (size[0] - width) // 2, (size[1] - height) // 2
                return np.asarray(image.crop((left, top, left + width, top + height)), np.float32) / 255.0
        except (OSError, Image.DecompressionBombError) as error:
            raise InputError(f"--background {text}: the image could not be read ({error}); give a PNG or JPEG, or a "
                             f"colour such as '#808080'.") from None
    try:
        if "," in text:
            rgb = np.array([float(v) for v in text.split(",")], np.float32)
            if rgb.shape != (3,) or not np.all((0 <= rgb) & (rgb <= 1)):
                raise ValueError
        else:
            rgb = np.array(ImageColor.getrgb(text)[:3], np.float32) / 255.0
    except ValueError:
        raise InputError(f"--background {text!r} is neither an image file nor a colour; give a path, a colour name "
                         f"('grey'), '#rrggbb' or 'r,g,b' in 0..1.") from None
    return np.broadcast_to(rgb, (height, width, 3)).copy()


def composite_layer(frames: np.ndarray, background: np.ndarray | str = DEFAULT_BACKGROUND) -> np.ndarray:
    """RGBA frames `(F, H, W, 4)` float in [0, 1] over a background -> `(F, H, W, 3)`; RGB frames pass unchanged."""
    frames = np.asarray(frames, dtype=np.float32)
    if frames.shape[-1] != 4:
        return frames
    if isinstance(background, str):
        background = background_plate(background, frames.shape[2], frames.shape[1])
    alpha = frames[..., 3:]
    return frames[..., :3] * alpha + background[None] * (1.0 - alpha)
