import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg.rl.masks import (
    RoleSpan,
    batch_loss_mask,
    loss_mask_from_role_ids,
    loss_mask_from_spans,
    shift_to_targets,
)

# prompt (0-3), assistant turn 1 (4-6), observation with frames (7-11), assistant turn 2 (12-14)
SPANS = [
    RoleSpan("user", 0, 4),
    RoleSpan("assistant", 4, 7),
    RoleSpan("observation", 7, 12),
    RoleSpan("assistant", 12, 15),
]


def test_only_assistant_tokens_carry_loss():
    m = loss_mask_from_spans(SPANS, 16)
    expected = np.zeros(16, bool)
    expected[4:7] = expected[12:15] = True
    np.testing.assert_array_equal(m, expected)  # padding token 15 is masked too


def test_batch_and_role_id_variant_agree():
    other = [RoleSpan("user", 0, 2), RoleSpan("assistant", 2, 10)]
    m = batch_loss_mask([SPANS, other], 16)
    role_of = {"user": 0, "assistant": 1, "observation": 2}
    ids = np.full((2, 16), 3)
    for b, spans in enumerate([SPANS, other]):
        for s in spans:
            ids[b, s.start : s.end] = role_of[s.role]
    jm = jax.jit(lambda r: loss_mask_from_role_ids(r, (1,)))(jnp.asarray(ids))
    np.testing.assert_array_equal(np.asarray(jm), m)


def test_shift_to_targets():
    m = jnp.array([[0, 0, 1, 1, 0]])
    np.testing.assert_array_equal(shift_to_targets(m), [[0, 1, 1, 0]])


def test_bad_spans_raise():
    with pytest.raises(ValueError, match="overlaps"):
        loss_mask_from_spans([RoleSpan("user", 0, 5), RoleSpan("assistant", 4, 6)], 8)
    with pytest.raises(ValueError, match="row 1.*outside"):
        batch_loss_mask([SPANS, [RoleSpan("assistant", 10, 20)]], 16)
