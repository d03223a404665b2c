import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from jaxseg.seg.calibration import (
    aux_mask_loss,
    bce_with_logits,
    calibrate_seg_logprobs,
    dice_loss,
    mask_loglik,
    resize_logits,
)


def _log_sigmoid(x):
    return -np.log1p(np.exp(-x))


def test_mask_loglik_hand_built():
    """F = 2 everywhere; R = +3 on the left half, -3 on the right: half the grid pixels
    score log sigma(2), half log sigma(-2)."""
    f = np.full((32, 32), 2.0, np.float32)
    r = np.full((32, 32), -3.0, np.float32)
    r[:, :16] = 3.0
    want = 0.5 * _log_sigmoid(2.0) + 0.5 * _log_sigmoid(-2.0)
    np.testing.assert_allclose(float(mask_loglik(jnp.asarray(f), jnp.asarray(r))), want, rtol=5e-5)


def test_mask_loglik_thresholds_logits_not_probabilities():
    """R = 0.3 is a probability above 1/2 but a logit below 0.5: R_bin = 0 (released code)."""
    f = jnp.full((32, 32), 1.0)
    got = float(mask_loglik(f, jnp.full((32, 32), 0.3)))
    np.testing.assert_allclose(got, _log_sigmoid(-1.0), rtol=5e-5)
    got = float(mask_loglik(f, jnp.full((32, 32), 0.6)))
    np.testing.assert_allclose(got, _log_sigmoid(1.0), rtol=5e-5)


@pytest.mark.parametrize("src,dst", [((64, 48), (32, 32)), ((16, 16), (32, 32)), ((7, 9), (5, 4))])
def test_resize_matches_torch_bilinear(src, dst):
    x = np.random.default_rng(0).standard_normal((2, 3) + src).astype(np.float32)
    want = torch.nn.functional.interpolate(
        torch.from_numpy(x), size=dst, mode="bilinear", align_corners=False
    ).numpy()
    np.testing.assert_allclose(np.asarray(resize_logits(jnp.asarray(x), dst)), want, atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(
    hnp.arrays(np.float32, (2, 8, 8), elements=st.floats(-8, 8, width=32)),
    hnp.arrays(np.float32, (2, 8, 8), elements=st.floats(-8, 8, width=32)),
)
def test_mask_loglik_is_negative_bce_on_the_grid(f, r):
    """On a grid of the masks' own size (no resize) it is -BCE(F, [R > 0.5]) per mask, <= 0."""
    got = np.asarray(mask_loglik(jnp.asarray(f), jnp.asarray(r), grid=8))
    want = -np.asarray(bce_with_logits(jnp.asarray(f), jnp.asarray(r > 0.5)))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert (got <= 0).all()


@settings(max_examples=30, deadline=None)
@given(st.data())
def test_calibrate_adds_one_value_per_seg_in_order(data):
    b, length, k = 3, 12, 3
    logp = data.draw(hnp.arrays(np.float32, (b, length), elements=st.floats(-5, 0, width=32)))
    ll = data.draw(hnp.arrays(np.float32, (b, k), elements=st.floats(-3, 0, width=32)))
    pos = np.full((b, k), -1, np.int32)
    counts = np.zeros(b, np.int32)
    for i in range(b):
        n = data.draw(st.integers(0, k))
        pos[i, :n] = sorted(data.draw(st.sets(st.integers(0, length - 1), min_size=n, max_size=n)))
        counts[i] = n if data.draw(st.booleans()) else n + 1  # some rows mismatch
    got = np.asarray(calibrate_seg_logprobs(*(jnp.asarray(x) for x in (logp, pos, ll, counts))))
    want = logp.copy()
    for i in range(b):
        valid = pos[i] >= 0
        if valid.sum() != counts[i]:
            continue  # released trainer: counts differ -> no injection for this sample
        for j in np.flatnonzero(valid):
            want[i, pos[i, j]] += ll[i, j]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_calibrate_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="seg_positions"):
        calibrate_seg_logprobs(jnp.zeros((2, 5)), jnp.zeros((2, 3), int), jnp.zeros((2, 2)), [1, 1])


def test_dice_and_aux_hand_built():
    """GT = 1 on a quarter of a 4x4 mask, prediction logit 0 (p = 1/2) everywhere:
    Dice = 1 - (2*2 + 1) / (8 + 4 + 1), BCE = log 2."""
    gt = np.zeros((4, 4), np.float32)
    gt[:2, :2] = 1
    x = jnp.zeros((4, 4))
    np.testing.assert_allclose(float(dice_loss(x, gt)), 1 - 5 / 13, rtol=1e-6)
    total, count = aux_mask_loss(x[None], jnp.asarray(gt)[None], weight=0.2)
    np.testing.assert_allclose(float(total), 0.2 * (2.0 * np.log(2) + 0.5 * (1 - 5 / 13)), 1e-6)
    assert float(count) == 1.0


def test_aux_skips_invalid_masks_and_checks_shapes():
    x = jnp.zeros((2, 4, 4))
    gt = jnp.ones((2, 8, 8))
    total, count = aux_mask_loss(x, gt, jnp.asarray([True, False]))
    one, _ = aux_mask_loss(x[:1], gt[:1])
    np.testing.assert_allclose(float(total), float(one), rtol=1e-6)
    assert float(count) == 1.0
    with pytest.raises(ValueError, match="gt_masks"):
        aux_mask_loss(x, jnp.ones((3, 8, 8)))


def test_mask_loglik_gradient_raises_agreeing_pixels():
    """d l_mask / dF > 0 where R_bin = 1, < 0 where R_bin = 0 (no resize)."""
    r = jnp.asarray(np.where(np.arange(16).reshape(4, 4) % 2, 2.0, -2.0))
    g = jax.grad(lambda f: mask_loglik(f, r, grid=4))(jnp.zeros((4, 4)))
    assert (np.sign(np.asarray(g)) == np.where(np.asarray(r) > 0.5, 1, -1)).all()
