"""Read predicted masks in the community submission layout `<pred>/<video>/<exp_id>/<frame>.png`.

PNGs are read as grey and binarised with `!= 0`, as every script does (cv2.IMREAD_GRAYSCALE),
so 0/1, 0/255 and palette PNGs all work.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxseg.data.readers.errors import DataFormatError
from jaxseg.data.readers.images import load_binary_png


def prediction_dir(pred_root: str | Path, video_id: str, exp_id: str) -> Path:
    return Path(pred_root) / video_id / str(exp_id)


def has_prediction(pred_root: str | Path, video_id: str, exp_id: str) -> bool:
    return prediction_dir(pred_root, video_id, exp_id).is_dir()


def load_prediction(
    pred_root: str | Path,
    video_id: str,
    exp_id: str,
    frame_names: Sequence[str],
    height: int,
    width: int,
    *,
    missing_frame_is_empty: bool = False,
) -> np.ndarray:
    """[T, H, W] bool for the named frames.

    A missing frame PNG is an error naming it, unless `missing_frame_is_empty` (the Long-RVOS
    script's convention). A PNG whose size differs from the video is always an error.
    """
    folder = prediction_dir(pred_root, video_id, exp_id)
    out = np.zeros((len(frame_names), height, width), dtype=bool)
    for i, name in enumerate(frame_names):
        path = folder / f"{name}.png"
        if not os.path.isfile(path):
            if missing_frame_is_empty:
                continue
            raise DataFormatError(path, "prediction", "file is missing")
        mask = load_binary_png(path, field="prediction")
        if mask.shape != (height, width):
            raise DataFormatError(
                path,
                "prediction",
                f"size {list(mask.shape)} disagrees with the GT size [{height}, {width}]",
            )
        out[i] = mask
    return out
