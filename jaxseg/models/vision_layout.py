"""Host-side (numpy) pieces of every family's vision layout: grid checks, the patch rotary
coordinates, attention segments and the block tables that let a jitted tower attend within
segments without a Python loop.

Both Qwen vision towers take patches in the processor's merge-block order and attend within
segments of contiguous patches (Qwen2.5-VL: windows and temporal slices; Qwen3-VL: temporal
slices). A segment becomes one row of a `[num_blocks, block_len]` gather table (`*_valid`
marks real slots) and attention runs per row; `*_inverse` gathers the results back to
sequence order. This is the arithmetic of transformers' per-chunk loop over `cu_seqlens`
(masked slots get weight exactly 0) at O(N * block_len) cost instead of O(N^2) for a dense
segment mask. Pad patches (`pad_to`) get segment id `PAD_SEGMENT`: they only see each other
and are never read back.
"""

from __future__ import annotations

import numpy as np

PAD_SEGMENT = -1


class PatchCounts:
    """Patch counts of a family's `VisionLayout` (which has `rotary_ids [N, 2]` and
    `full_segment_ids [N]`, N = patches including padding)."""

    @property
    def padded_patches(self) -> int:
        return int(self.rotary_ids.shape[0])

    @property
    def real_patches(self) -> int:
        """Patches of the grids, without padding (host only: reads the segment ids)."""
        return int((np.asarray(self.full_segment_ids) != PAD_SEGMENT).sum())


def check_grid(grid_thw: np.ndarray, merge: int) -> np.ndarray:
    """`grid_thw` as an int64 `[n, 3]` array; a ValueError when it is empty, not positive, or
    its h / w are not multiples of `spatial_merge_size`."""
    grid = np.asarray(grid_thw, dtype=np.int64).reshape(-1, 3)
    if grid.size == 0:
        raise ValueError("grid_thw is empty")
    if (grid <= 0).any():
        raise ValueError(f"grid_thw must be positive, got {grid.tolist()}")
    if (grid[:, 1:] % merge).any():
        raise ValueError(
            f"grid_thw h and w must be multiples of spatial_merge_size={merge}, got {grid.tolist()}"
        )
    return grid


def padded_count(n: int, pad_to: int | None, unit: int) -> int:
    """The patch count after padding `n` real patches to `pad_to` (None: no padding); a
    ValueError unless it is >= n and a multiple of `spatial_merge_unit`."""
    n_pad = n if pad_to is None else int(pad_to)
    if n_pad < n or n_pad % unit:
        raise ValueError(
            f"pad_to={pad_to} must be >= {n} patches and a multiple of spatial_merge_unit={unit}"
        )
    return n_pad


def rotary_position_ids(grid_thw: np.ndarray, merge: int) -> np.ndarray:
    """(h, w) coordinate of every patch in processor (merge-block) order, `[N, 2]`.

    transformers `vision_utils.get_vision_position_ids`: reshape (h/m, m, w/m, m), swap the
    middle axes, repeat for each temporal slice."""
    out = []
    for t, h, w in check_grid(grid_thw, merge):
        hpos, wpos = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        shape = (h // merge, merge, w // merge, merge)
        hpos = hpos.reshape(shape).transpose(0, 2, 1, 3).reshape(-1)
        wpos = wpos.reshape(shape).transpose(0, 2, 1, 3).reshape(-1)
        out.append(np.tile(np.stack([hpos, wpos], axis=-1), (t, 1)))
    return np.concatenate(out, axis=0)


def full_attention_cu_seqlens(grid_thw: np.ndarray) -> np.ndarray:
    """Boundaries of the full-attention segments: one per temporal slice (`h * w` patches),
    transformers' `cu_seqlens` of the vision tower, `[1 + sum(t)]`."""
    grid = np.asarray(grid_thw, dtype=np.int64).reshape(-1, 3)
    lengths = np.repeat(grid[:, 1] * grid[:, 2], grid[:, 0])
    return np.concatenate([[0], np.cumsum(lengths)])


def segments_from_cu(cu: np.ndarray, n: int) -> np.ndarray:
    """Segment id `[n]` int32 of each of `n` positions, from the boundaries `cu`."""
    return np.searchsorted(cu[1:], np.arange(n), side="right").astype(np.int32)


def segment_blocks(
    segment_ids: np.ndarray, block_len: int, num_blocks: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(gather `[B, block_len]`, valid `[B, block_len]`, inverse `[N]`) for contiguous segments.

    Each run of equal ids becomes one block row; only the pad segment may be longer than
    `block_len` (it is split, pad outputs are never used). `num_blocks` pads with empty rows."""
    n = len(segment_ids)
    starts = np.flatnonzero(np.r_[True, segment_ids[1:] != segment_ids[:-1]])
    ends = np.r_[starts[1:], n]
    rows: list[tuple[int, int]] = []
    for s, e in zip(starts.tolist(), ends.tolist()):
        if e - s > block_len and segment_ids[s] != PAD_SEGMENT:
            raise ValueError(f"segment of {e - s} patches does not fit block_len={block_len}")
        rows.extend((c, min(c + block_len, e)) for c in range(s, e, block_len))
    total = len(rows) if num_blocks is None else int(num_blocks)
    if total < len(rows):
        raise ValueError(f"{len(rows)} attention blocks needed, num_blocks={num_blocks}")
    gather = np.zeros((total, block_len), np.int32)
    valid = np.zeros((total, block_len), bool)
    inverse = np.zeros(n, np.int32)
    for r, (s, e) in enumerate(rows):
        gather[r, : e - s] = np.arange(s, e)
        valid[r, : e - s] = True
        inverse[s:e] = r * block_len + np.arange(e - s)
    return gather, valid, inverse
