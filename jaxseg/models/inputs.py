"""The host encoder: conversation rows -> the static-shape inputs of a jitted policy.

Training (`jaxseg.train.batch.make_policy_batch`: whole conversations, right-padded) and
sampling (`jaxseg.sampling.batch.assemble_segment`: prompts and appended turns, left-padded)
both build their batches from `Prompt` rows through the functions here, and reach the
family-specific pieces (M-RoPE positions, the vision tower's layout) through the family seam
(`PolicyFamily.get_rope_index`, `PolicyFamily.encode_media`):

* `check_row`: token ids inside the vocabulary, pixels and grids given together, one run of
  placeholder tokens per image grid (per video: the family's `video_runs_per_grid`) and as many
  pixel rows as the grids have patches, so features land in the right row after the
  batch-wide merge;
* `encode_media`: every row's pixels concatenated in row order (the order of the placeholder
  tokens, row-major) and padded to a bucketed patch count, with the family's `VisionLayout`
  of the padded sequence;
* `bucket`: the one padding ladder for sequence lengths, patch counts, cache lengths and slot
  counts, so a new length or image size rarely compiles a new step.

Patchify, resize and normalisation stay in transformers' processors (the rows carry their
outputs: `pixel_values [N, C*T*P*P]`, `image_grid_thw [n, 3]`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .family import PolicyFamily

PolicyConfig = Any
VisionLayout = Any


def bucket(n: int, buckets: Sequence[int] | None = None, *, minimum: int = 16) -> int:
    """The padded size of `n`: the smallest entry of `buckets` >= n; without `buckets`, or
    past their largest entry, the smallest step >= max(n, minimum) of the ladder 2^k and
    1.5 * 2^k (16, 24, 32, 48, 64, 96, ...): two compiled shapes per octave, at most a third
    of the size spent on padding (plain powers of two spend up to half)."""
    if n < 0:
        raise ValueError(f"size must be >= 0, got {n}")
    for b in sorted(buckets or ()):
        if b >= n:
            return int(b)
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


MEDIA = (
    ("pixel_values", "image_grid_thw", "image_token_id"),
    ("pixel_values_videos", "video_grid_thw", "video_token_id"),
)


def check_row(b: int, row: Prompt, config: PolicyConfig, what: str = "prompt") -> np.ndarray:
    """Row `b`'s token ids `[L]` int64, after checking them and its media against `config`;
    a ValueError naming the row and the field otherwise."""
    from .family import family_of

    vocab = config.text.vocab_size
    ids = np.asarray(row.input_ids, np.int64).reshape(-1)
    if ids.size == 0:
        raise ValueError(f"row {b}: empty {what} (nothing to condition the next token on)")
    bad = (ids < 0) | (ids >= vocab)
    if bad.any():
        raise ValueError(
            f"row {b}: {what} token id {int(ids[bad][0])} outside the vocabulary [0, {vocab})"
        )
    for pixels_attr, grid_attr, token_attr in MEDIA:
        pv, grid = getattr(row, pixels_attr), getattr(row, grid_attr)
        if (pv is None) != (grid is None):
            raise ValueError(f"row {b}: {pixels_attr} and {grid_attr} must be given together")
        is_token = ids == getattr(config, token_attr)
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
    return ids


def encode_media(
    family: PolicyFamily,
    rows: Sequence[Prompt],
    config: PolicyConfig,
    kind: str = "image",
    *,
    patch_buckets: Sequence[int] | None = None,
) -> tuple[np.ndarray | None, VisionLayout | None]:
    """(pixel_values `[P, patch_dim]` float32, VisionLayout) of every row's images (`kind`
    "image") or videos ("video") in row order, P = `bucket` of the real patch count (at
    least 16 merged tokens); (None, None) when no row has any.

    The layout's `num_patches` is set to P: the real count is static metadata of the
    pytree, so marking the layout as covering the padded pixels gives jit one treedef per
    bucket (features past the real count are pad rows that `merge_features` never reads)."""
    pixels_attr, grid_attr, _ = MEDIA[("image", "video").index(kind)]
    pixels, grids = [], []
    for row in rows:
        pv = getattr(row, pixels_attr)
        if pv is not None:
            pixels.append(np.asarray(pv, np.float32))
            grids.append(np.asarray(getattr(row, grid_attr), np.int64).reshape(-1, 3))
    if not pixels:
        return None, None
    grid = np.concatenate(grids)
    n = int(np.prod(grid, axis=1).sum())
    n_pad = bucket(n, patch_buckets, minimum=config.vision.spatial_merge_unit * 16)
    layout = family.vision_layout(grid, config.vision, pad_to=n_pad)
    values = np.pad(np.concatenate(pixels), ((0, n_pad - n), (0, 0)))
    return values, layout.replace(num_patches=n_pad)
