"""Host-side assembly of one prefill (a prompt, or a turn appended to a conversation), through
the host encoder (jaxseg.models.inputs: row checks, bucketed media and layouts).

Every row is left-padded to a bucketed length, so all rows end in the same cache slot and one
shared write index serves the whole batch (`KVCache.index`); pad slots are invalid in the
cache's key mask.

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
from jaxseg.models.inputs import Prompt, bucket, check_row


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
    rows, positions, next_pos, new_histories = [], [], [], []
    for b, (hist, seg) in enumerate(zip(histories, segments, strict=True)):
        if seg is None:  # row left as it is: all-pad segment, history unchanged
            rows.append(np.zeros(0, np.int64))
            positions.append(np.zeros((3, 0), np.int64))
            next_pos.append(0)
            new_histories.append(hist.copy())
            continue
        ids = check_row(b, seg, config, "prompt" if not hist.ids else "appended turn")
        full = hist.extended(seg)
        try:
            pos, nxt = conversation_positions(full, config)
        except ValueError as e:  # placeholder count vs grid; get_rope_index saw one row
            raise ValueError(f"row {b}: {str(e).removeprefix('row 0: ')}") from None
        rows.append(ids)
        positions.append(pos[:, -len(ids) :])
        next_pos.append(nxt)
        new_histories.append(full)
    length = bucket(max(len(r) for r in rows), length_buckets)
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
    family = family_of(config)
    pv, ilayout = family.encode_media(present, config, "image", patch_buckets=patch_buckets)
    pvv, vlayout = family.encode_media(present, config, "video", patch_buckets=patch_buckets)
    seg_batch = SegmentBatch(input_ids, mask, pos_ids, pv, ilayout, pvv, vlayout)
    return seg_batch, np.asarray(next_pos, np.int32), new_histories
