"""Host-side (numpy) index arrays that make the Qwen3-VL vision tower jit-friendly.

transformers computes these from `grid_thw` on every forward (`vision_utils`); here they are
computed once on host and passed to the jitted tower as a `VisionLayout` pytree:

* `rotary_ids [N, 2]`: (h, w) of every patch in the processor's merge-block order
  (`get_vision_position_ids`), for the 2-D axial rotary;
* `interp_indices / interp_weights [N, 4]`: the bilinear (align_corners=True, border) taps into
  the square learned position table that resample it to each image's grid
  (`get_vision_interpolation_indices_and_weights`, the `fast_pos_embed_interpolate` of the
  original Qwen3-VL code), computed in float32 as torch does;
* attention blocks: every block attends within one temporal slice (`h * w` patches) of one
  image or video (`cu_seqlens` of transformers); there are no windows in Qwen3-VL. Blocks are
  rows of a `[num_blocks, block_len]` gather table (jaxseg/models/vision_layout.py, shared
  with the Qwen2.5-VL layout).

Optional padding (`pad_to`) lets inputs of different sizes share one compiled shape: pad
patches form their own segment and are never read back.
"""

from __future__ import annotations

import numpy as np
from flax import struct

from .. import vision_layout as common
from .config import VisionConfig


@struct.dataclass
class VisionLayout(common.PatchCounts):
    """Index arrays for one call of the Qwen3-VL vision tower.

    rotary_ids `[N, 2]` int32; interp_indices `[N, 4]` int32 and interp_weights `[N, 4]`
    float32; full_gather / full_valid `[num_blocks, block_len]`; full_inverse `[N]`.
    N = patches including padding; `num_patches` = without padding (the host encoder
    sets it to N: one jit treedef per padding bucket; `real_patches` is the real count).
    """

    rotary_ids: np.ndarray
    interp_indices: np.ndarray
    interp_weights: np.ndarray
    full_segment_ids: np.ndarray
    full_gather: np.ndarray
    full_valid: np.ndarray
    full_inverse: np.ndarray
    num_patches: int = struct.field(pytree_node=False, default=0)


def _axis_taps(index: np.ndarray, size: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear, align_corners=True taps (floor, floor+1, clamped) and weights on one axis,
    float32 like transformers' `_interpolation_axis_taps_weights`."""
    index = index.astype(np.float32)
    denom = np.maximum(size - 1, 1).astype(np.float32)
    src = (index * np.float32(side - 1) / denom).astype(np.float32)
    floor = np.floor(src)
    offsets = np.arange(2, dtype=np.float32)
    taps = np.clip(floor.astype(np.int64)[:, None] + np.arange(2), 0, side - 1)
    distance = np.abs(src[:, None] - floor[:, None] - offsets)
    weights = np.clip(np.float32(1) - distance, 0, None).astype(np.float32)
    return taps, weights


def interpolation_indices_and_weights(
    grid_thw: np.ndarray, num_grid_per_side: int, merge: int
) -> tuple[np.ndarray, np.ndarray]:
    """(indices `[N, 4]`, weights `[N, 4]`) resampling the `side x side` table to every grid,
    patches in merge-block order."""
    rows, cols, heights, widths = [], [], [], []
    for t, h, w in np.asarray(grid_thw, np.int64).reshape(-1, 3):
        within = np.arange(h * w)
        blocks_w = w // merge
        in_col, in_row = within % merge, (within // merge) % merge
        block_col = (within // (merge * merge)) % blocks_w
        block_row = within // (merge * merge * blocks_w)
        rows.append(np.tile(block_row * merge + in_row, t))
        cols.append(np.tile(block_col * merge + in_col, t))
        heights.append(np.full(t * h * w, h))
        widths.append(np.full(t * h * w, w))
    side = num_grid_per_side
    h_taps, h_w = _axis_taps(np.concatenate(rows), np.concatenate(heights), side)
    w_taps, w_w = _axis_taps(np.concatenate(cols), np.concatenate(widths), side)
    indices = (h_taps[:, :, None] * side + w_taps[:, None, :]).reshape(-1, 4)
    weights = (h_w[:, :, None] * w_w[:, None, :]).reshape(-1, 4).astype(np.float32)
    return indices.astype(np.int32), weights


def vision_layout(
    grid_thw: np.ndarray,
    config: VisionConfig,
    pad_to: int | None = None,
    *,
    num_slice_blocks: int | None = None,
    slice_block_len: int | None = None,
) -> VisionLayout:
    """Builds the `VisionLayout` of one tower call over the images (or videos) in `grid_thw`.

    `pad_to`: total patch count to pad to (a multiple of spatial_merge_unit, >= the real count).
    `num_slice_blocks` / `slice_block_len`: pad the attention block table to fixed sizes."""
    merge, unit = config.spatial_merge_size, config.spatial_merge_unit
    grid = common.check_grid(grid_thw, merge)
    n = int((grid[:, 0] * grid[:, 1] * grid[:, 2]).sum())
    n_pad = common.padded_count(n, pad_to, unit)
    extra = n_pad - n
    rotary = common.rotary_position_ids(grid, merge)
    indices, weights = interpolation_indices_and_weights(grid, config.num_grid_per_side, merge)
    segments = common.segments_from_cu(common.full_attention_cu_seqlens(grid), n)
    segments = np.concatenate([segments, np.full(extra, common.PAD_SEGMENT, np.int32)])
    slice_len = int((grid[:, 1] * grid[:, 2]).max()) if slice_block_len is None else slice_block_len
    gather, valid, inverse = common.segment_blocks(segments, slice_len, num_slice_blocks)
    return VisionLayout(
        rotary_ids=np.concatenate([rotary, np.zeros((extra, 2), np.int64)]).astype(np.int32),
        interp_indices=np.concatenate([indices, np.zeros((extra, 4), np.int32)]),
        interp_weights=np.concatenate([weights, np.zeros((extra, 4), np.float32)]),
        full_segment_ids=segments,
        full_gather=gather,
        full_valid=valid,
        full_inverse=inverse,
        num_patches=n,
    )
