"""Rotary positions of Qwen3-VL.

* `get_rope_index` (host, numpy): the 3-D (t, h, w) M-RoPE positions and `rope_deltas`, with the
  semantics of transformers 5.23 `Qwen3VLModel.get_rope_index`.
* `text_rope_cos_sin` (jax): the decoder's *interleaved* M-RoPE: frequency j is driven by the
  height row when `j % 3 == 1 and j < 3 * mrope_section[1]`, by the width row when
  `j % 3 == 2 and j < 3 * mrope_section[2]`, else by the temporal row
  (`Qwen3VLTextRotaryEmbedding.recomposition_frequencies`), so every band of frequencies sees
  all three axes (Qwen3-VL report, "Interleaved-MRoPE").

The vision tower's 2-D axial rotary is the same function as Qwen2.5-VL's
(`jaxseg.models.qwen2_5_vl.rope.vision_rope_cos_sin`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from jaxseg.models.qwen2_5_vl.rope import (
    inverse_frequencies,
    mm_token_type_ids_from_input_ids,
)

from .config import Qwen3VLConfig


def get_rope_index(
    input_ids: np.ndarray,
    image_grid_thw: np.ndarray | None = None,
    video_grid_thw: np.ndarray | None = None,
    second_per_grid_ts: Sequence[float] | np.ndarray | None = None,
    attention_mask: np.ndarray | None = None,
    *,
    config: Qwen3VLConfig,
    mm_token_type_ids: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """M-RoPE positions `[3, B, L]` (int64) and `rope_deltas [B, 1]`, on host.

    As transformers 5.23 `Qwen3VLModel.get_rope_index`:

    * only tokens with `attention_mask == 1` get positions (pads are 0);
    * text continues 1-D from the current position on all three rows;
    * every video grid is split into `t` one-frame grids (Qwen3-VL writes a text timestamp and
      its own vision_start/end around each frame, so each frame is its own placeholder run);
    * a run of placeholders takes the next grid of its kind; its rows are `current` (t) and
      `current + h`, `current + w` over the merged grid;
    * after a media run the position advances by `max(grid_h, grid_w) // spatial_merge_size`;
    * `rope_deltas = max(position) + 1 - number_of_valid_tokens`.

    `second_per_grid_ts` is accepted for signature parity with Qwen2.5-VL and ignored (time is
    in the timestamp text). `mm_token_type_ids` defaults to the placeholder ids of `config`.
    """
    del second_per_grid_ts
    input_ids = np.asarray(input_ids)
    if input_ids.ndim != 2:
        raise ValueError(f"input_ids must be [B, L], got shape {input_ids.shape}")
    batch, length = input_ids.shape
    if mm_token_type_ids is None:
        mm_token_type_ids = mm_token_type_ids_from_input_ids(
            input_ids, config.image_token_id, config.video_token_id
        )
    mm_token_type_ids = np.asarray(mm_token_type_ids)
    mask = (
        np.ones((batch, length), dtype=bool)
        if attention_mask is None
        else np.asarray(attention_mask).astype(bool)
    )
    merge = config.vision.spatial_merge_size
    videos = None
    if video_grid_thw is not None:
        grid = np.asarray(video_grid_thw, np.int64).reshape(-1, 3)
        videos = np.repeat(grid, grid[:, 0], axis=0)
        videos[:, 0] = 1
    grids = {
        1: iter(np.asarray(image_grid_thw).reshape(-1, 3)) if image_grid_thw is not None else None,
        2: iter(videos) if videos is not None else None,
    }
    position_ids = np.zeros((3, batch, length), dtype=np.int64)
    deltas = np.zeros((batch, 1), dtype=np.int64)
    for b in range(batch):
        types = mm_token_type_ids[b][mask[b]]
        chunks: list[np.ndarray] = []
        current = 0
        start = 0
        for kind, group in itertools.groupby(types.tolist()):
            run = len(list(group))
            if kind == 0:
                chunks.append(np.broadcast_to(np.arange(run) + current, (3, run)))
                current += run
            else:
                name = "image_grid_thw" if kind == 1 else "video_grid_thw"
                if grids[kind] is None:
                    raise ValueError(f"row {b}: {name.split('_')[0]} tokens but {name} is None")
                try:
                    t, h, w = (int(x) for x in next(grids[kind]))
                except StopIteration:
                    raise ValueError(f"row {b}: more media runs than grids in {name}") from None
                gh, gw = h // merge, w // merge
                if run != t * gh * gw:
                    raise ValueError(
                        f"row {b}, tokens {start}..{start + run}: {run} placeholder tokens but "
                        f"{name} row {(t, h, w)} needs {t * gh * gw}"
                    )
                tt, hh, ww = np.meshgrid(np.arange(t), np.arange(gh), np.arange(gw), indexing="ij")
                chunks.append(np.stack([tt, hh, ww]).reshape(3, -1) + current)
                current += max(h, w) // merge
            start += run
        if chunks:
            positions = np.concatenate(chunks, axis=1)
            position_ids[:, b, mask[b]] = positions
            deltas[b, 0] = positions.max() + 1 - int(mask[b].sum())
    return position_ids, deltas


def mrope_axis_of_frequency(mrope_section: Sequence[int], num_frequencies: int) -> np.ndarray:
    """For each of the head_dim/2 frequencies, the position row (0=t, 1=h, 2=w) that drives it
    in the interleaved layout: t h w t h w ... while each axis has sections left."""
    axis = np.zeros(num_frequencies, dtype=np.int32)
    for row in (1, 2):
        axis[row : 3 * mrope_section[row] : 3] = row
    return axis


def text_rope_cos_sin(
    position_ids: jnp.ndarray,
    head_dim: int,
    theta: float,
    mrope_section: Sequence[int],
    dtype: jnp.dtype,
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """cos, sin `[B, L, head_dim]` from `position_ids [3, B, L]`, float32 then cast to `dtype`."""
    inv_freq = jnp.asarray(inverse_frequencies(head_dim, theta))  # [head_dim/2]
    axis = mrope_axis_of_frequency(mrope_section, head_dim // 2)
    pos = position_ids.astype(jnp.float32)  # [3, B, L]
    freqs = jnp.moveaxis(pos[axis], 0, -1) * inv_freq  # [B, L, head_dim/2]
    emb = jnp.concatenate([freqs, freqs], axis=-1)
    return jnp.cos(emb).astype(dtype), jnp.sin(emb).astype(dtype)
