"""Image file access with errors that name the file: frames (RGB) and mask PNGs."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from jaxseg.data.readers.errors import DataFormatError


def image_size(path: str | Path, field: str = "frame") -> tuple[int, int]:
    """(height, width) from the header only; raises DataFormatError if missing or unreadable."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except FileNotFoundError:
        raise DataFormatError(path, field, "file is missing") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise DataFormatError(path, field, f"not a readable image ({exc})") from None
    return height, width


def load_rgb(path: str | Path, field: str = "frame") -> np.ndarray:
    """[H, W, 3] uint8."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except FileNotFoundError:
        raise DataFormatError(path, field, "file is missing") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise DataFormatError(path, field, f"cannot decode image ({exc})") from None


def decode_rgb_bytes(data: bytes, name: str, field: str = "frame") -> np.ndarray:
    """[H, W, 3] uint8 from encoded image bytes (e.g. JPEG stored in a tfds record)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise DataFormatError(name, field, f"cannot decode image bytes ({exc})") from None


def load_label_png(path: str | Path, field: str = "mask") -> np.ndarray:
    """[H, W] uint8 raw values: palette indices for 'P' PNGs, grey levels otherwise.

    Palette PNGs (DAVIS / YouTube-VOS annotations) carry the object id as the palette index.
    """
    try:
        with Image.open(path) as image:
            if image.mode in ("P", "L", "1"):
                return np.asarray(image, dtype=np.uint8)
            return np.asarray(image.convert("L"))
    except FileNotFoundError:
        raise DataFormatError(path, field, "file is missing") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise DataFormatError(path, field, f"cannot decode PNG ({exc})") from None


def load_binary_png(path: str | Path, field: str = "mask") -> np.ndarray:
    """[H, W] bool, foreground = non-zero grey value.

    Matches the community scripts, which read masks with cv2.IMREAD_GRAYSCALE (palette
    colours are converted to grey first) and binarise with `!= 0`.
    """
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("L")) != 0
    except FileNotFoundError:
        raise DataFormatError(path, field, "file is missing") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise DataFormatError(path, field, f"cannot decode PNG ({exc})") from None
