"""Rotary position embeddings of Qwen2.5-VL.

* `get_rope_index` (host, numpy): the 3-D (temporal, height, width) M-RoPE positions of a
  text + image + video prompt and the per-row `rope_deltas`, with the semantics of the pinned
  transformers 5.23 `Qwen2_5_VLModel.get_rope_index`.
* `text_rope_cos_sin` (jax): M-RoPE cos/sin for the decoder, `mrope_section` split contiguous.
* `vision_rope_cos_sin` (jax): the 2-D axial RoPE of the vision tower.

Position ids are computed on host, never inside jit: they depend on `grid_thw` values.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from .config import Qwen2_5_VLConfig

# ----------------------------------------------------------------------------- host: positions


def mm_token_type_ids_from_input_ids(
    input_ids: np.ndarray, image_token_id: int, video_token_id: int
) -> np.ndarray:
    """0 text, 1 image placeholder, 2 video placeholder (what the HF processor returns)."""
    input_ids = np.asarray(input_ids)
    types = np.zeros(input_ids.shape, dtype=np.int32)
    types[input_ids == image_token_id] = 1
    types[input_ids == video_token_id] = 2
    return types


def get_rope_index(
    input_ids: np.ndarray,
    image_grid_thw: np.ndarray | None = None,
    video_grid_thw: np.ndarray | None = None,
    second_per_grid_ts: Sequence[float] | np.ndarray | None = None,
    attention_mask: np.ndarray | None = None,
    *,
    config: Qwen2_5_VLConfig,
    mm_token_type_ids: np.ndarray | None = None,
    text_resumes_at: str = "transformers5",
) -> tuple[np.ndarray, np.ndarray]:
    """M-RoPE positions `[3, B, L]` (int64) and `rope_deltas [B, 1]` (int64), on host.

    Same arguments and result as transformers 5.23 `Qwen2_5_VLModel.get_rope_index`:

    * only tokens with `attention_mask == 1` get positions; masked (pad) slots are 0;
    * a text run continues 1-D from the current position on all three rows;
    * a run of image/video placeholder tokens takes the next grid (in order of appearance, over
      the whole batch); its rows are `t * interval`, `h`, `w` of the merged grid plus the
      current position, with `interval = tokens_per_second * second_per_grid_t` for videos
      (default 1 s per grid when `second_per_grid_ts` is None) and 1 for images; the
      temporal coordinate is truncated to int after the multiply;
    * after a media run the position advances by `max(grid_h, grid_w) // spatial_merge_size`
      (`text_resumes_at="transformers5"`, the pinned transformers). transformers 4.x and the
      original Qwen2.5-VL code resumed at `max(media position) + 1`
      (`text_resumes_at="max_position"`); the two differ only for videos whose scaled temporal
      ids exceed the spatial extent;
    * `rope_deltas = max(position) + 1 - number_of_valid_tokens`; decode positions are
      `cache_position + rope_delta` on all three rows.

    `mm_token_type_ids` defaults to the image/video placeholder ids of `config`, as the
    processor computes them. A prompt without media gives plain `cumsum(mask) - 1` positions.
    """
    if text_resumes_at not in ("transformers5", "max_position"):
        raise ValueError(
            f"text_resumes_at must be 'transformers5' or 'max_position', got {text_resumes_at!r}"
        )
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
    tokens_per_second = config.vision.tokens_per_second
    grids = {
        1: iter(np.asarray(image_grid_thw).reshape(-1, 3)) if image_grid_thw is not None else None,
        2: iter(np.asarray(video_grid_thw).reshape(-1, 3)) if video_grid_thw is not None else None,
    }
    seconds = iter(second_per_grid_ts) if second_per_grid_ts is not None else itertools.repeat(1)

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
                    raise ValueError(f"row {b}: more media runs than rows in {name}") from None
                # float32 like torch: `tokens_per_second * second_per_grid_ts[i]` on a float32
                # tensor, times `arange(t)`, then truncated with `.long()`.
                interval = (
                    np.float32(tokens_per_second) * np.float32(next(seconds))
                    if kind == 2
                    else np.float32(1)
                )
                gh, gw = h // merge, w // merge
                if run != t * gh * gw:
                    raise ValueError(
                        f"row {b}, tokens {start}..{start + run}: {run} placeholder tokens but "
                        f"{name} row {(t, h, w)} needs {t * gh * gw}"
                    )
                t_idx = (np.arange(t, dtype=np.float32) * interval).astype(np.int64)
                tt, hh, ww = np.meshgrid(t_idx, np.arange(gh), np.arange(gw), indexing="ij")
                chunks.append(np.stack([tt, hh, ww]).reshape(3, -1) + current)
                if text_resumes_at == "transformers5":
                    current += max(h, w) // merge
                else:
                    current = int(chunks[-1].max()) + 1
            start += run
        if chunks:
            positions = np.concatenate(chunks, axis=1)
            position_ids[:, b, mask[b]] = positions
            deltas[b, 0] = positions.max() + 1 - int(mask[b].sum())
        # An all-masked row keeps zeros; transformers would fail on it.
    return position_ids, deltas


def inverse_frequencies(dim: int, theta: float) -> np.ndarray:
    """`1 / theta ** (arange(0, dim, 2) / dim)` as float32, within 1 ulp of torch's float32
    computation (exponent in float32, power rounded to float32, reciprocal in float32)."""
    exponent = np.arange(0, dim, 2, dtype=np.float32) / np.float32(dim)
    power = np.power(np.float64(theta), exponent.astype(np.float64)).astype(np.float32)
    return (np.float32(1.0) / power).astype(np.float32)


def rotate_half(x: jnp.ndarray) -> jnp.ndarray:
    """(x1, x2) -> (-x2, x1) over the last axis, halves not interleaved."""
    x1, x2 = jnp.split(x, 2, axis=-1)
    return jnp.concatenate([-x2, x1], axis=-1)


# ----------------------------------------------------------------------------- text M-RoPE


def mrope_axis_of_frequency(mrope_section: Sequence[int]) -> np.ndarray:
    """For each of the head_dim/2 frequencies, which position row (0=t, 1=h, 2=w) drives it.

    transformers splits the frequencies contiguously by `mrope_section` and takes chunk i from
    row i % 3 (not the interleaved layout of Qwen3-VL)."""
    return np.concatenate([np.full(n, i % 3, dtype=np.int32) for i, n in enumerate(mrope_section)])


def text_rope_cos_sin(
    position_ids: jnp.ndarray,
    head_dim: int,
    theta: float,
    mrope_section: Sequence[int],
    dtype: jnp.dtype,
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """cos, sin `[B, L, head_dim]` from `position_ids [3, B, L]`, float32 then cast to `dtype`."""
    inv_freq = jnp.asarray(inverse_frequencies(head_dim, theta))  # [head_dim/2]
    axis = mrope_axis_of_frequency(mrope_section)  # [head_dim/2]
    pos = position_ids.astype(jnp.float32)  # [3, B, L]
    # Row chosen per frequency, then multiplied: [B, L, head_dim/2].
    selected = jnp.moveaxis(pos[axis], 0, -1)
    freqs = selected * inv_freq
    emb = jnp.concatenate([freqs, freqs], axis=-1)
    return jnp.cos(emb).astype(dtype), jnp.sin(emb).astype(dtype)


def apply_text_rope(x: jnp.ndarray, cos: jnp.ndarray, sin: jnp.ndarray) -> jnp.ndarray:
    """x `[B, L, H, D]`, cos/sin `[B, L, D]`; computed in x's dtype like transformers."""
    cos, sin = cos[:, :, None, :], sin[:, :, None, :]
    return x * cos + rotate_half(x) * sin


# ----------------------------------------------------------------------------- vision 2-D RoPE


def vision_rope_cos_sin(
    rotary_ids: jnp.ndarray, head_dim: int, theta: float
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """cos, sin `[N, head_dim]` (float32) from `(h, w)` patch ids `[N, 2]`.

    head_dim/4 frequencies per axis: `[f(h), f(w), f(h), f(w)]` (Qwen2_5_VLVisionRotaryEmbedding)."""
    inv_freq = jnp.asarray(inverse_frequencies(head_dim // 2, theta))  # [head_dim/4]
    freqs = rotary_ids.astype(jnp.float32)[..., None] * inv_freq  # [N, 2, head_dim/4]
    hw = freqs.reshape(freqs.shape[0], -1)  # [N, head_dim/2]
    emb = jnp.concatenate([hw, hw], axis=-1)
    return jnp.cos(emb), jnp.sin(emb)


def apply_vision_rope(x: jnp.ndarray, cos: jnp.ndarray, sin: jnp.ndarray) -> jnp.ndarray:
    """x `[N, H, D]`; rotation in float32, result cast back to x's dtype."""
    x32 = x.astype(jnp.float32)
    out = x32 * cos[:, None, :] + rotate_half(x32) * sin[:, None, :]
    return out.astype(x.dtype)
