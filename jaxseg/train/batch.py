"""`PolicyBatch`: what a teacher-forced pass of the policy needs, built on host.

SFT and GRPO share it. Each example is one whole conversation (all turns, every image in
order) as token ids plus a per-token `policy_mask` (1 on tokens the policy wrote: assistant
turns; 0 on system/user/observation tokens, including injected frames). Token ids are used
as they are: a rollout's sampled ids are never re-tokenized from text, so the trainer scores
exactly the sequence the sampler produced.

Everything that depends on values (M-RoPE positions, the vision tower's layout) is computed
here with numpy through the host encoder the sampler uses too (jaxseg.models.inputs: row
checks, bucketed media and layouts), so the jitted step sees only static shapes. Lengths and
patch counts are padded up to buckets, so a new example length rarely compiles a new step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from flax import struct

from jaxseg.models.family import PolicyConfig, VisionLayout, family_of
from jaxseg.models.inputs import Prompt, bucket, check_row

DEFAULT_LENGTH_BUCKETS = (64, 128, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096, 8192)


@struct.dataclass
class PolicyBatch:
    """Shapes: B rows, L tokens (right padded), P patches (padded).

    input_ids, attention_mask `[B, L]` int32; position_ids `[3, B, L]` int32;
    loss_mask `[B, L-1]` float32, target-aligned (entry t scores input_ids[:, t+1]);
    pixel_values `[P, patch_dim]` + image_layout, or None for text-only batches;
    advantages `[B]`; old_logp / ref_logp `[B, L-1]` target-aligned (zeros when absent).
    """

    input_ids: np.ndarray
    attention_mask: np.ndarray
    position_ids: np.ndarray
    loss_mask: np.ndarray
    pixel_values: np.ndarray | None
    image_layout: VisionLayout | None
    advantages: np.ndarray
    old_logp: np.ndarray
    ref_logp: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.input_ids.shape)


def _field(example: Mapping[str, Any], key: str, index: int) -> np.ndarray:
    if key not in example:
        raise KeyError(f"example {index} has no field {key!r}")
    return np.asarray(example[key])


def make_policy_batch(
    examples: Sequence[Mapping[str, Any]],
    *,
    config: PolicyConfig,
    pad_id: int = 0,
    length_buckets: Sequence[int] | None = DEFAULT_LENGTH_BUCKETS,
    patch_buckets: Sequence[int] | None = None,
) -> PolicyBatch:
    """Collates examples into a `PolicyBatch`.

    Example fields: ``input_ids [L_i]``, ``policy_mask [L_i]``; optional
    ``pixel_values [P_i, patch_dim]`` with ``image_grid_thw [n_i, 3]``, ``advantage`` (scalar),
    ``old_logp [L_i]`` / ``ref_logp [L_i]`` (log-prob of token i given its prefix; entry 0
    unused). Images of all rows are concatenated in row order, as the model merges them, and
    padded to `bucket(patches, patch_buckets)` (jaxseg.models.inputs.encode_media).
    """
    if not examples:
        raise ValueError("make_policy_batch needs at least one example")
    ids = [_field(e, "input_ids", i).astype(np.int64).reshape(-1) for i, e in enumerate(examples)]
    masks = [
        _field(e, "policy_mask", i).astype(np.float32).reshape(-1) for i, e in enumerate(examples)
    ]
    rows = [
        Prompt(a, e.get("pixel_values"), e.get("image_grid_thw")) for a, e in zip(ids, examples)
    ]
    for i, (row, a, m) in enumerate(zip(rows, ids, masks)):
        check_row(i, row, config, "input_ids")
        if a.shape != m.shape:
            raise ValueError(f"example {i}: policy_mask {m.shape} != input_ids {a.shape}")
    b, length = len(examples), bucket(max(a.size for a in ids), length_buckets)
    input_ids = np.full((b, length), pad_id, np.int64)
    attention = np.zeros((b, length), np.int64)
    token_mask = np.zeros((b, length), np.float32)
    old = np.zeros((b, length), np.float32)
    ref = np.zeros((b, length), np.float32)
    for i, (e, a, m) in enumerate(zip(examples, ids, masks)):
        n = a.size
        input_ids[i, :n], attention[i, :n], token_mask[i, :n] = a, 1, m
        for key, buf in (("old_logp", old), ("ref_logp", ref)):
            if key in e and e[key] is not None:
                v = np.asarray(e[key], np.float32).reshape(-1)
                if v.size != n:
                    raise ValueError(f"example {i}: {key} has {v.size} entries for {n} tokens")
                buf[i, :n] = v
    advantages = np.asarray([float(e.get("advantage", 0.0)) for e in examples], np.float32)

    pixel_values, layout = family_of(config).encode_media(
        rows, config, "image", patch_buckets=patch_buckets
    )
    grids = [
        np.asarray(r.image_grid_thw).reshape(-1, 3) for r in rows if r.pixel_values is not None
    ]
    grid = np.concatenate(grids) if grids else None
    positions, _ = family_of(config).get_rope_index(
        input_ids, grid, None, None, attention, config=config
    )
    return PolicyBatch(
        input_ids=input_ids.astype(np.int32),
        attention_mask=attention.astype(np.int32),
        position_ids=positions.astype(np.int32),
        loss_mask=token_mask[:, 1:] * attention[:, 1:],
        pixel_values=pixel_values,
        image_layout=layout,
        advantages=advantages,
        old_logp=old[:, 1:],
        ref_logp=ref[:, 1:],
    )
