"""Multi-turn loss masks: only the policy's own tokens carry loss.

A multi-turn episode is one token sequence of turns: system/user prompt, assistant
turn, observation turn (injected frames, tool text), assistant turn, ... The protocol
that builds the sequence knows each turn's token span; it passes them here as
`RoleSpan`s. Tokens of the trainable role(s) (default "assistant") get mask 1;
everything else (prompts, observations, image placeholders, padding) gets 0. VideoSEG-O3
masks user/tool turns including injected images the same way
(`trainer_videorl_cot.py`), and applies one trajectory-level advantage to all assistant
turns.

Whether the assistant turn's end-of-turn token (<|im_end|>) is in its span is the
caller's choice: include it, so the policy learns to stop.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

import jax.numpy as jnp
import numpy as np
from jax import Array

POLICY_ROLES = ("assistant",)


@dataclasses.dataclass(frozen=True)
class RoleSpan:
    """Tokens [start, end) of one turn, spoken by `role`."""

    role: str
    start: int
    end: int


def loss_mask_from_spans(
    spans: Iterable[RoleSpan], seq_len: int, *, trainable_roles: Sequence[str] = POLICY_ROLES
) -> np.ndarray:
    """[L] bool mask, True on tokens of trainable-role spans. Spans must not overlap."""
    mask = np.zeros(seq_len, dtype=bool)
    covered = np.zeros(seq_len, dtype=bool)
    for i, span in enumerate(spans):
        if not (0 <= span.start <= span.end <= seq_len):
            raise ValueError(f"span {i} {span} is outside the sequence [0, {seq_len})")
        if covered[span.start : span.end].any():
            raise ValueError(f"span {i} {span} overlaps an earlier span")
        covered[span.start : span.end] = True
        if span.role in trainable_roles:
            mask[span.start : span.end] = True
    return mask


def batch_loss_mask(
    spans_per_row: Sequence[Iterable[RoleSpan]],
    seq_len: int,
    *,
    trainable_roles: Sequence[str] = POLICY_ROLES,
) -> np.ndarray:
    """[B, L] bool loss mask for a padded batch of multi-turn sequences."""
    rows = []
    for b, spans in enumerate(spans_per_row):
        try:
            rows.append(loss_mask_from_spans(spans, seq_len, trainable_roles=trainable_roles))
        except ValueError as err:
            raise ValueError(f"row {b}: {err}") from None
    return np.stack(rows) if rows else np.zeros((0, seq_len), dtype=bool)


def loss_mask_from_role_ids(role_ids: Array, trainable_role_ids: Sequence[int]) -> Array:
    """Jittable variant: [B, L] integer role per token -> [B, L] bool."""
    ids = jnp.asarray(list(trainable_role_ids), dtype=role_ids.dtype)
    return (role_ids[..., None] == ids).any(axis=-1)


def shift_to_targets(token_mask: Array) -> Array:
    """Align a [B, L] per-token mask with next-token log-probs [B, L - 1].

    Log-prob t scores token t + 1 (`logprobs.next_token_logprobs`), so it carries loss
    exactly when token t + 1 is a policy token.
    """
    return token_mask[:, 1:]
