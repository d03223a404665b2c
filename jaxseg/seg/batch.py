"""Rollouts / cold-start traces -> `SegBatch`: where each [SEG] is and what it is decoded on.

A conversation's policy tokens form one contiguous run per assistant turn (the observation
between turns is not policy text), so the k-th run is turn k; every [SEG] the policy wrote
gets its turn's keyframe (the environment's `turn_keyframes`), that frame's frozen SAM2
features and the GT mask there. Prompt [SEG]s (the system prompt names the token) are not
policy tokens and are skipped. K (slots per row) is padded to a bucket so the jitted step
rarely recompiles.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from jaxseg.models.inputs import bucket
from jaxseg.train.batch import PolicyBatch

from .policy import SegBatch

K_BUCKETS = (2, 4, 8, 16)


@dataclasses.dataclass(frozen=True)
class SegSlots:
    """index [n]: input positions of the policy's [SEG] tokens; turn [n]: their turns."""

    index: np.ndarray
    turn: np.ndarray


def seg_slots(input_ids, policy_mask, seg_id: int, num_turns: int | None = None) -> SegSlots:
    """The policy-written [SEG]s of one conversation and the turn (policy run) of each."""
    ids = np.asarray(input_ids).reshape(-1)
    mask = np.asarray(policy_mask).reshape(-1) > 0
    starts = mask & ~np.concatenate([[False], mask[:-1]])
    run = np.cumsum(starts) - 1
    if num_turns is not None and int(starts.sum()) != num_turns:
        raise ValueError(
            f"conversation has {int(starts.sum())} policy-token runs but {num_turns} turns"
        )
    where = np.flatnonzero((ids == seg_id) & mask)
    return SegSlots(where.astype(np.int32), run[where].astype(np.int32))


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """[H, W] bool -> [size, size] float32 by area averaging then 0.5 threshold (PIL box)."""
    from PIL import Image

    img = Image.fromarray(np.asarray(mask, np.uint8) * 255).resize((size, size), Image.BOX)
    return (np.asarray(img) >= 128).astype(np.float32)


@dataclasses.dataclass
class SlotData:
    """Per-[SEG] host arrays of one row: features (embed [n, C, h, w], hr0, hr1), gt [n, S, S],
    rollout logits [n, S, S] (zeros for cold start)."""

    slots: SegSlots
    embed: np.ndarray
    hr0: np.ndarray
    hr1: np.ndarray
    gt: np.ndarray
    rollout: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class SlotShapes:
    """Per-slot array shapes (decoder config): embed (C, h, w), hr0 (C/8, 4h, 4w),
    hr1 (C/4, 2h, 2w), mask (S, S) with S = 4h, the decoder's low-res output side."""

    embed: tuple[int, int, int]
    hr0: tuple[int, int, int]
    hr1: tuple[int, int, int]
    mask: tuple[int, int]

    @classmethod
    def for_decoder(cls, channels: int, embed_size: int) -> SlotShapes:
        c, h = channels, embed_size
        return cls((c, h, h), (c // 8, 4 * h, 4 * h), (c // 4, 2 * h, 2 * h), (4 * h, 4 * h))


def make_seg_batch(
    policy_batch: PolicyBatch, rows: Sequence[SlotData], shapes: SlotShapes
) -> SegBatch:
    """Pads each row's slots to K = bucket(max n) and stacks them with the PolicyBatch (a
    row without [SEG] has only padding: its text still trains, nothing is decoded for it)."""
    if len(rows) != policy_batch.shape[0]:
        raise ValueError(f"{len(rows)} slot rows for a batch of {policy_batch.shape[0]}")
    k = bucket(max(1, max(len(r.slots.index) for r in rows)), K_BUCKETS)

    def pad(get, shape):
        out = np.zeros((len(rows), k) + tuple(shape), np.float32)
        for b, r in enumerate(rows):
            n = len(r.slots.index)
            if n:
                out[b, :n] = get(r)
        return out

    index = np.full((len(rows), k), -1, np.int32)
    for b, r in enumerate(rows):
        index[b, : len(r.slots.index)] = r.slots.index
    rollout = pad(lambda r: r.rollout if r.rollout is not None else 0.0, shapes.mask)
    return SegBatch(
        policy=policy_batch,
        seg_index=jnp.asarray(index),
        # the rollout's [SEG]-on-keyframe masks (calibration); not the sampled-frame slots
        mask_count=jnp.asarray([int((r.slots.turn >= 0).sum()) for r in rows], jnp.int32),
        image_embed=jnp.asarray(pad(lambda r: r.embed, shapes.embed)),
        high_res_feats=(
            jnp.asarray(pad(lambda r: r.hr0, shapes.hr0)),
            jnp.asarray(pad(lambda r: r.hr1, shapes.hr1)),
        ),
        rollout_logits=jnp.asarray(rollout),
        gt_masks=jnp.asarray(pad(lambda r: r.gt, shapes.mask)),
        gt_valid=jnp.asarray(index >= 0),
    )
