"""Bucketed padding: stack per-example dicts into a batch, padding ragged axes up to a bucket.

Padding to a few fixed sizes (instead of the batch maximum) keeps the number of distinct
shapes, and so of XLA recompilations, small.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class PadRule:
    """How to pad one key: along `axis`, to the smallest bucket >= the batch's longest, or to a
    multiple of `multiple` when no buckets are given; fill with `value`; `side` left/right."""

    axis: int = 0
    buckets: tuple[int, ...] | None = None
    multiple: int = 1
    value: float | int = 0
    side: str = "right"

    def target(self, longest: int, key: str) -> int:
        if self.buckets:
            for b in sorted(self.buckets):
                if b >= longest:
                    return b
            raise ValueError(
                f"{key}: length {longest} exceeds the largest bucket {max(self.buckets)}"
            )
        m = max(1, self.multiple)
        return -(-longest // m) * m


def bucket_length(longest: int, buckets: Sequence[int]) -> int:
    return PadRule(buckets=tuple(buckets)).target(longest, "length")


def pad_to(x: np.ndarray, size: int, rule: PadRule) -> np.ndarray:
    axis = rule.axis % x.ndim
    extra = size - x.shape[axis]
    if extra < 0:
        raise ValueError(f"cannot pad axis {axis} of length {x.shape[axis]} down to {size}")
    widths = [(0, 0)] * x.ndim
    widths[axis] = (extra, 0) if rule.side == "left" else (0, extra)
    return np.pad(x, widths, constant_values=np.asarray(rule.value, dtype=x.dtype))


def collate(examples: Sequence[Mapping[str, object]], rules: Mapping[str, PadRule]) -> dict:
    """[B] dicts -> dict of [B, ...] arrays. Keys with a rule are padded; others must agree in
    shape (an error names the key). Strings become a [B] str array."""
    if not examples:
        raise ValueError("cannot collate an empty batch")
    keys = list(examples[0])
    for i, ex in enumerate(examples[1:], 1):
        if list(ex) != keys:
            raise ValueError(f"example {i} has keys {sorted(ex)}, example 0 has {sorted(keys)}")
    out = {}
    for key in keys:
        values = [np.asarray(ex[key]) for ex in examples]
        rule = rules.get(key)
        out[key] = _pad_stack(values, rule, key) if rule is not None else _stack(values, key)
    return out


def _stack(values: list[np.ndarray], key: str) -> np.ndarray:
    shapes = {v.shape for v in values}
    if len(shapes) > 1:
        raise ValueError(f"{key}: examples have different shapes {sorted(shapes)}; add a PadRule")
    return np.stack(values)


def _pad_stack(values: list[np.ndarray], rule: PadRule, key: str) -> np.ndarray:
    """One allocation filled with the pad value, each example copied into its slice."""
    axis = rule.axis % values[0].ndim
    size = rule.target(max(v.shape[axis] for v in values), key)
    rest = {v.shape[:axis] + v.shape[axis + 1 :] for v in values}
    if len(rest) > 1:
        raise ValueError(f"{key}: examples differ outside the padded axis {axis}: {sorted(rest)}")
    shape = values[0].shape[:axis] + (size,) + values[0].shape[axis + 1 :]
    dtype = np.result_type(*values)
    fill = np.asarray(rule.value, dtype=dtype)
    out = (
        np.zeros((len(values), *shape), dtype)
        if fill == 0
        else np.full((len(values), *shape), fill)
    )
    for i, v in enumerate(values):
        n = v.shape[axis]
        span = slice(size - n, size) if rule.side == "left" else slice(0, n)
        out[(i,) + (slice(None),) * axis + (span,)] = v
    return out
