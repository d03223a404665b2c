"""Host-side preparation of one batch for the jitted model.

Takes what transformers' Qwen2.5-VL processor returns (a `BatchFeature` / dict with
`input_ids`, `attention_mask`, `pixel_values`, `image_grid_thw`, `pixel_values_videos`,
`video_grid_thw`, `second_per_grid_ts`, optionally `mm_token_type_ids`) and adds everything that
depends on grid values, so the device step only sees arrays of static shapes:

    batch = processor(text=..., images=..., videos=..., return_tensors="np")
    host = prepare_inputs(batch, config)
    logits = jitted_forward(model, **host)   # keys match the model's keyword arguments

Patchify, resize and normalisation stay in transformers' processors (not re-implemented here).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .config import Qwen2_5_VLConfig
from .rope import get_rope_index
from .vision_layout import vision_layout


def _np(x) -> np.ndarray | None:
    if x is None:
        return None
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def prepare_inputs(
    batch: Mapping[str, Any],
    config: Qwen2_5_VLConfig,
    *,
    image_pad_to: int | None = None,
    video_pad_to: int | None = None,
) -> dict[str, Any]:
    """numpy arrays + `VisionLayout`s for `Qwen2_5_VLForConditionalGeneration.__call__`.

    Returns input_ids, attention_mask, position_ids `[3, B, L]`, rope_deltas `[B, 1]` and, when
    present, pixel_values + image_layout and pixel_values_videos + video_layout (padded to
    `*_pad_to` patches if given). `rope_deltas` is not a model argument: the sampler keeps it."""
    input_ids = _np(batch["input_ids"])
    mask = _np(batch.get("attention_mask"))
    image_grid = _np(batch.get("image_grid_thw"))
    video_grid = _np(batch.get("video_grid_thw"))
    seconds = _np(batch.get("second_per_grid_ts"))
    position_ids, rope_deltas = get_rope_index(
        input_ids,
        image_grid,
        video_grid,
        None if seconds is None else seconds.astype(np.float32),
        mask,
        config=config,
        mm_token_type_ids=_np(batch.get("mm_token_type_ids")),
    )
    out: dict[str, Any] = {
        "input_ids": input_ids,
        "attention_mask": np.ones_like(input_ids) if mask is None else mask,
        "position_ids": position_ids,
        "rope_deltas": rope_deltas,
    }
    for pixels_key, layout_key, grid, pad_to in (
        ("pixel_values", "image_layout", image_grid, image_pad_to),
        ("pixel_values_videos", "video_layout", video_grid, video_pad_to),
    ):
        if batch.get(pixels_key) is None:
            continue
        layout = vision_layout(grid, config.vision, pad_to=pad_to)
        pixels = _np(batch[pixels_key]).astype(np.float32)
        extra = layout.padded_patches - pixels.shape[0]
        out[pixels_key] = np.pad(pixels, ((0, extra), (0, 0))) if extra > 0 else pixels
        out[layout_key] = layout
    return out
