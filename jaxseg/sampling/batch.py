"""Host-side assembly of one prefill (a prompt, or a turn appended to a conversation).

Every row is left-padded to a bucketed length, so all rows end in the same cache slot and one
shared write index serves the whole batch (`KVCache.index`); pad slots are invalid in the
cache's key mask. Media of all rows are concatenated in row order (the order of the
placeholder tokens, row-major) and padded to a bucketed patch count, so new prompt lengths and
image sizes reuse compiled code.

Positions: each row's segment gets the M-RoPE positions `get_rope_index` gives it *inside the
whole conversation so far* (history + segment + one probe text token). The probe's position is
where generation continues (`next_position`). For a prompt ending in text this is the
transformers `generate` rule (last position + 1 on all three rows) and, unlike `max + 1` from
`rope_deltas`, it also equals what a full forward over prompt + completion gives when a video's
scaled temporal ids run past the trailing text (transformers >= 5 advances the position after
a video by its spatial extent only) — so sampler and trainer log-probs agree.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from flax import struct

from jaxseg.models.family import PolicyConfig, VisionLayout, family_of


def bucket_length(n: int, buckets: Sequence[int] | None = None, minimum: int = 16) -> int:
    """Smallest bucket >= max(n, minimum): from a `buckets` list when given (raises when n
    exceeds its largest entry), else from the default ladder 2^k and 1.5 * 2^k (16, 24, 32,
    48, 64, 96, ...): two compiled shapes per octave, at most a third of the length wasted
    on padding (plain powers of two waste up to half)."""
    if n < 0:
        raise ValueError(f"length must be >= 0, got {n}")
    if buckets:
        for b in sorted(buckets):
            if b >= n:
                return int(b)
        raise ValueError(f"length {n} exceeds the largest bucket {max(buckets)}")
    n = max(n, minimum, 1)
    power = 1 << (n - 1).bit_length()  # smallest power of two >= n
    three_quarters = 3 * power // 4
    return three_quarters if power >= 4 and three_quarters >= n else power


@dataclasses.dataclass(frozen=True)
class Prompt:
    """One row's tokens (no padding) and its media, as the HF processor returns them.

    pixel_values `[N, patch_dim]` for all images of this row, image_grid_thw `[n_images, 3]`;
    likewise for videos, with `second_per_grid_ts [n_videos]` (default 1.0 s per grid)."""

    input_ids: Sequence[int]
    pixel_values: np.ndarray | None = None
    image_grid_thw: np.ndarray | None = None
    pixel_values_videos: np.ndarray | None = None
    video_grid_thw: np.ndarray | None = None
    second_per_grid_ts: Sequence[float] | None = None


@dataclasses.dataclass
class History:
    """What a row's conversation holds so far (host): every token in the cache, in order, and the
    grids of its media, for recomputing M-RoPE positions of appended turns."""

    ids: list[int] = dataclasses.field(default_factory=list)
    image_grids: list[np.ndarray] = dataclasses.field(default_factory=list)
    video_grids: list[np.ndarray] = dataclasses.field(default_factory=list)
    seconds: list[float] = dataclasses.field(default_factory=list)

    def extended(self, prompt: Prompt) -> History:
        images, videos = _grids(prompt.image_grid_thw), _grids(prompt.video_grid_thw)
        secs = _seconds(prompt, len(videos))
        return History(
            self.ids + [int(t) for t in prompt.input_ids],
            self.image_grids + images,
            self.video_grids + videos,
            self.seconds + secs,
        )

    def copy(self) -> History:
        return History(
            list(self.ids), list(self.image_grids), list(self.video_grids), list(self.seconds)
        )


@struct.dataclass
class SegmentBatch:
    """Device inputs of one prefill: input_ids / attention_mask `[B, L]` int32, position_ids
    `[3, B, L]` int32, pixels padded to the layouts' bucketed patch counts (or None)."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    position_ids: np.ndarray
    pixel_values: np.ndarray | None = None
    image_layout: VisionLayout | None = None
    pixel_values_videos: np.ndarray | None = None
    video_layout: VisionLayout | None = None


def _grids(grid) -> list[np.ndarray]:
    if grid is None:
        return []
    return [np.asarray(g, np.int64) for g in np.asarray(grid).reshape(-1, 3)]


def _seconds(prompt: Prompt, n_videos: int) -> list[float]:
    if prompt.second_per_grid_ts is None:
        return [1.0] * n_videos
    secs = [float(s) for s in np.asarray(prompt.second_per_grid_ts).reshape(-1)]
    if len(secs) != n_videos:
        raise ValueError(f"second_per_grid_ts has {len(secs)} entries for {n_videos} videos")
    return secs


def _probe_token(config: PolicyConfig) -> int:
    media = {config.image_token_id, config.video_token_id}
    return next(t for t in range(3) if t not in media)


def conversation_positions(history: History, config: PolicyConfig) -> tuple[np.ndarray, int]:
    """M-RoPE positions `[3, len(history.ids)]` of the whole conversation and the position the
    next (text) token gets."""
    ids = np.asarray([history.ids + [_probe_token(config)]])
    pos, _ = family_of(config).get_rope_index(
        ids,
        np.stack(history.image_grids) if history.image_grids else None,
        np.stack(history.video_grids) if history.video_grids else None,
        history.seconds if history.video_grids else None,
        config=config,
    )
    return pos[:, 0, :-1], int(pos[0, 0, -1])


def _check_ids(b: int, ids: Sequence[int], vocab: int, what: str) -> np.ndarray:
    arr = np.asarray(ids, np.int64).reshape(-1)
    if arr.size == 0:
        raise ValueError(f"row {b}: empty {what} (nothing to condition the next token on)")
    bad = (arr < 0) | (arr >= vocab)
    if bad.any():
        raise ValueError(
            f"row {b}: {what} token id {int(arr[bad][0])} outside the vocabulary [0, {vocab})"
        )
    return arr


def _check_media(b: int, prompt: Prompt, ids: np.ndarray, config: PolicyConfig) -> None:
    """Pixels and grids given together, pixel rows == patches of the grids, placeholder runs ==
    what the grids make (one per image; per video the family's `video_runs_per_grid`), so
    features land in the right row after the batch-wide merge."""
    for pixels_attr, grid_attr, token in (
        ("pixel_values", "image_grid_thw", config.image_token_id),
        ("pixel_values_videos", "video_grid_thw", config.video_token_id),
    ):
        pv, grid = getattr(prompt, pixels_attr), getattr(prompt, grid_attr)
        if (pv is None) != (grid is None):
            raise ValueError(f"row {b}: {pixels_attr} and {grid_attr} must be given together")
        is_token = ids == token
        runs = int(is_token[0]) + int((is_token[1:] & ~is_token[:-1]).sum())
        grids = [] if grid is None else np.asarray(grid).reshape(-1, 3)
        runs_of = family_of(config).video_runs_per_grid if pixels_attr.endswith("videos") else None
        n_grids = sum(runs_of(g) for g in grids) if runs_of else len(grids)
        if runs != n_grids:
            raise ValueError(
                f"row {b}: {runs} runs of {grid_attr.split('_')[0]} placeholder tokens but "
                f"{n_grids} rows in {grid_attr}"
            )
        if pv is None:
            continue
        need = int(np.prod(np.asarray(grid, np.int64).reshape(-1, 3), axis=1).sum())
        if np.shape(pv)[0] != need:
            raise ValueError(
                f"row {b}: {pixels_attr} has {np.shape(pv)[0]} rows, {grid_attr} needs {need}"
            )


def _media(
    prompts: Sequence[Prompt],
    pixels_attr: str,
    grid_attr: str,
    config: PolicyConfig,
    patch_buckets: Sequence[int] | None,
) -> tuple[np.ndarray | None, VisionLayout | None]:
    pixels, grids = [], []
    for p in prompts:
        pv, grid = getattr(p, pixels_attr), getattr(p, grid_attr)
        if pv is None:
            continue
        g = np.asarray(grid, np.int64).reshape(-1, 3)
        pixels.append(np.asarray(pv, np.float32))
        grids.append(g)
    if not pixels:
        return None, None
    grid = np.concatenate(grids)
    n = int(np.prod(grid, axis=1).sum())
    n_pad = bucket_length(n, patch_buckets, minimum=config.vision.spatial_merge_unit * 16)
    layout = family_of(config).vision_layout(grid, config.vision, pad_to=n_pad)
    # The real patch count is static metadata of VisionLayout; mark the layout as covering the
    # padded pixels so jit sees one treedef per bucket (features past the real count are pad
    # rows that `merge_features` never reads).
    layout = layout.replace(num_patches=n_pad)
    values = np.concatenate(pixels)
    values = np.pad(values, ((0, n_pad - n), (0, 0)))
    return values, layout


def assemble_segment(
    histories: Sequence[History],
    segments: Sequence[Prompt | None],
    config: PolicyConfig,
    *,
    length_buckets: Sequence[int] | None = None,
    patch_buckets: Sequence[int] | None = None,
) -> tuple[SegmentBatch, np.ndarray, list[History]]:
    """Left-padded, bucketed prefill inputs for appending `segments[b]` to `histories[b]`.

    `segments[b] = None`: row b gets an all-padding segment and keeps its history.
    Returns the batch, `next_positions [B]` int32 (where each row's generation continues) and
    the extended histories."""
    if len(histories) != len(segments):
        raise ValueError(f"{len(segments)} segments for {len(histories)} rows")
    if not segments:
        raise ValueError("no prompts")
    vocab = config.text.vocab_size
    rows, positions, next_pos, new_histories = [], [], [], []
    for b, (hist, seg) in enumerate(zip(histories, segments, strict=True)):
        if seg is None:  # row left as it is: all-pad segment, history unchanged
            rows.append(np.zeros(0, np.int64))
            positions.append(np.zeros((3, 0), np.int64))
            next_pos.append(0)
            new_histories.append(hist.copy())
            continue
        ids = _check_ids(b, seg.input_ids, vocab, "prompt" if not hist.ids else "appended turn")
        _check_media(b, seg, ids, config)
        full = hist.extended(seg)
        try:
            pos, nxt = conversation_positions(full, config)
        except ValueError as e:  # placeholder count vs grid; get_rope_index saw one row
            raise ValueError(f"row {b}: {str(e).removeprefix('row 0: ')}") from None
        rows.append(ids)
        positions.append(pos[:, -len(ids) :])
        next_pos.append(nxt)
        new_histories.append(full)
    length = bucket_length(max(len(r) for r in rows), length_buckets)
    batch = len(rows)
    input_ids = np.zeros((batch, length), np.int32)
    mask = np.zeros((batch, length), np.int32)
    pos_ids = np.zeros((3, batch, length), np.int32)
    for b, (ids, pos) in enumerate(zip(rows, positions, strict=True)):
        if len(ids):
            input_ids[b, length - len(ids) :] = ids
            mask[b, length - len(ids) :] = 1
            pos_ids[:, b, length - len(ids) :] = pos
    present = [seg for seg in segments if seg is not None]
    pv, ilayout = _media(present, "pixel_values", "image_grid_thw", config, patch_buckets)
    pvv, vlayout = _media(present, "pixel_values_videos", "video_grid_thw", config, patch_buckets)
    seg_batch = SegmentBatch(input_ids, mask, pos_ids, pv, ilayout, pvv, vlayout)
    return seg_batch, np.asarray(next_pos, np.int32), new_histories
