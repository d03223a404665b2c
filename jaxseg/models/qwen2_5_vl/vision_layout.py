"""Host-side (numpy) index arrays that make the vision tower jit-friendly.

transformers computes the window permutation, `cu_seqlens` and rotary ids from `grid_thw` with
Python loops on every forward (`vision_utils.get_vision_window_index` etc.). Here they are
computed once on host, in the data pipeline if wanted, and passed to the jitted tower as a
`VisionLayout` pytree. Attention boundaries become per-token segment ids (attend iff
`seg_q == seg_k`), so there is no loop over windows inside jit.

Layout of the tower's working sequence (window order):

1. The processor emits patches in merge-block order: every `spatial_merge_unit` (4)
   consecutive rows are one merged token.
2. Merged tokens are permuted by `window_index` so each attention window (4x4 merged tokens for
   the released models; partial at the right/bottom edge) is contiguous.
3. Windowed layers attend within a window; full layers (`fullatt_block_indexes`) attend within
   one temporal slice (one `temporal_patch_size` group of frames) of one image/video.
4. After the merger the merged tokens are put back with `reverse_index = argsort(window_index)`.

Attention is computed blockwise over each segment (window or temporal slice):
jaxseg/models/vision_layout.py, shared with the Qwen3-VL layout.

Optional padding (`pad_to`, `num_window_blocks`, `num_slice_blocks`, `slice_block_len`) lets
inputs of different sizes share one compiled shape: pad patches get segment id -1 (they only
see each other), empty blocks are fully invalid; the first `num_patches / 4` merged outputs are
the real features.
"""

from __future__ import annotations

import numpy as np
from flax import struct

from .. import vision_layout as common
from .config import VisionConfig


@struct.dataclass
class VisionLayout(common.PatchCounts):
    """Index arrays for one call of the vision tower (all int32).

    window_index `[M]`: merged-token order inside the tower (original index at each slot).
    reverse_index `[M]`: `argsort(window_index)`, restores processor order after the merger.
    rotary_ids `[N, 2]`: (h, w) patch coordinates, already in window order.
    window_segment_ids `[N]`: attention window of each slot (windowed layers).
    full_segment_ids `[N]`: temporal slice of each slot (full-attention layers).
    {window,full}_gather `[num_blocks, block_len]`: slots of each segment, block per row.
    {window,full}_valid `[num_blocks, block_len]` bool: real entries of `*_gather`.
    {window,full}_inverse `[N]`: index into the flattened blocks of each slot's result.
    N = patches (incl. padding), M = N / spatial_merge_unit.
    """

    window_index: np.ndarray
    reverse_index: np.ndarray
    rotary_ids: np.ndarray
    window_segment_ids: np.ndarray
    full_segment_ids: np.ndarray
    window_gather: np.ndarray
    window_valid: np.ndarray
    window_inverse: np.ndarray
    full_gather: np.ndarray
    full_valid: np.ndarray
    full_inverse: np.ndarray
    # static: the real patch count, or (host encoder) the padded one, so that jit sees one
    # treedef per padding bucket
    num_patches: int = struct.field(pytree_node=False, default=0)


def window_index_and_cu_seqlens(
    grid_thw: np.ndarray, config: VisionConfig
) -> tuple[np.ndarray, np.ndarray]:
    """`window_index [M]` and `cu_window_seqlens` exactly as transformers'
    `get_vision_window_index` (including the always-added padding to a multiple of the window,
    and `unique_consecutive` on the boundaries)."""
    merge = config.spatial_merge_size
    win = config.merger_window
    unit = config.spatial_merge_unit
    window_index: list[np.ndarray] = []
    cu = [0]
    offset = 0
    for t, h, w in common.check_grid(grid_thw, merge):
        gh, gw = h // merge, w // merge
        index = np.arange(t * gh * gw).reshape(t, gh, gw)
        pad_h = win - gh % win
        pad_w = win - gw % win
        nwh, nww = (gh + pad_h) // win, (gw + pad_w) // win
        padded = np.pad(index, ((0, 0), (0, pad_h), (0, pad_w)), constant_values=-100)
        padded = padded.reshape(t, nwh, win, nww, win).transpose(0, 1, 3, 2, 4)
        padded = padded.reshape(t, nwh * nww, win, win)
        seqlens = (padded != -100).sum(axis=(2, 3)).reshape(-1)
        flat = padded.reshape(-1)
        window_index.append(flat[flat != -100] + offset)
        cu.extend((np.cumsum(seqlens) * unit + cu[-1]).tolist())
        offset += t * gh * gw
    cu_arr = np.asarray(cu, dtype=np.int64)
    keep = np.concatenate([[True], cu_arr[1:] != cu_arr[:-1]])
    return np.concatenate(window_index), cu_arr[keep]


def vision_layout(
    grid_thw: np.ndarray,
    config: VisionConfig,
    pad_to: int | None = None,
    *,
    num_window_blocks: int | None = None,
    num_slice_blocks: int | None = None,
    slice_block_len: int | None = None,
) -> VisionLayout:
    """Builds the `VisionLayout` of one tower call over the images (or videos) in `grid_thw`.

    `pad_to`: total patch count to pad to (a multiple of spatial_merge_unit, >= the real count).
    `num_window_blocks` / `num_slice_blocks` / `slice_block_len`: pad the block tables to fixed
    sizes (defaults: exactly what this grid needs; windows always use block_len
    `merger_window**2 * spatial_merge_unit`).
    """
    merge, unit = config.spatial_merge_size, config.spatial_merge_unit
    grid = common.check_grid(grid_thw, merge)
    n = int((grid[:, 0] * grid[:, 1] * grid[:, 2]).sum())
    window_index, cu_window = window_index_and_cu_seqlens(grid, config)
    # Patch-level permutation: slot p of the working sequence holds original patch perm[p].
    perm = (window_index[:, None] * unit + np.arange(unit)[None, :]).reshape(-1)
    rotary = common.rotary_position_ids(grid, merge)[perm]
    # Slots keep their temporal slice under the permutation (windows never cross slices), so
    # the position-based cu_seqlens of transformers and the slice of each patch agree.
    window_seg = common.segments_from_cu(cu_window, n)
    full_seg = common.segments_from_cu(common.full_attention_cu_seqlens(grid), n)

    n_pad = common.padded_count(n, pad_to, unit)
    extra = n_pad - n
    m, m_pad = n // unit, n_pad // unit
    window_index = np.concatenate([window_index, np.arange(m, m_pad)])
    window_seg = np.concatenate([window_seg, np.full(extra, common.PAD_SEGMENT, np.int32)])
    full_seg = np.concatenate([full_seg, np.full(extra, common.PAD_SEGMENT, np.int32)])
    window_len = config.merger_window**2 * unit
    slice_len = int((grid[:, 1] * grid[:, 2]).max()) if slice_block_len is None else slice_block_len
    w_gather, w_valid, w_inverse = common.segment_blocks(window_seg, window_len, num_window_blocks)
    f_gather, f_valid, f_inverse = common.segment_blocks(full_seg, slice_len, num_slice_blocks)
    return VisionLayout(
        window_index=window_index.astype(np.int32),
        reverse_index=np.argsort(window_index, kind="stable").astype(np.int32),
        rotary_ids=np.concatenate([rotary, np.zeros((extra, 2), np.int64)]).astype(np.int32),
        window_segment_ids=window_seg,
        full_segment_ids=full_seg,
        window_gather=w_gather,
        window_valid=w_valid,
        window_inverse=w_inverse,
        full_gather=f_gather,
        full_valid=f_valid,
        full_inverse=f_inverse,
        num_patches=n,
    )
