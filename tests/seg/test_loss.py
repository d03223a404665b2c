"""The calibration term's value and where its gradient goes.

All batches have the same shapes (two rows, two [SEG] each, KL on) so the jitted gradient
functions compile once per loss config."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxseg.rl.objective import GRPOLossConfig
from jaxseg.seg.calibration import aux_mask_loss, calibrate_seg_logprobs, mask_loglik
from jaxseg.seg.loss import SegLossConfig, seg_loss_terms, seg_objective, seg_positions

from .conftest import make_batch, make_policy

KL = GRPOLossConfig(policy_loss="on_policy", kl_coef=0.04)
CALIBRATED = SegLossConfig(grpo=KL, calibrate=True, aux_weight=0.0)
UNCALIBRATED = SegLossConfig(grpo=KL, calibrate=False, aux_weight=0.0)
AUX_ONLY_MASK = SegLossConfig(grpo=KL, calibrate=False, aux_weight=0.2)


@nnx.jit
def _forward(policy, batch):
    return policy(batch)


@nnx.jit(static_argnames=("cfg",))
def _grads(policy, batch, cfg):
    def f(p):
        t = seg_loss_terms(p(batch), batch, cfg)
        return seg_objective(t, cfg.grpo.kl_coef, t.policy.weight, t.aux.weight)

    return nnx.grad(f)(policy)


@nnx.jit
def _ll_grads(policy, batch, row_weights):
    """grad of sum_b w_b l_mask(row b) (both [SEG]s of each row)."""

    def f(p):
        ll = mask_loglik(p(batch).mask_logits, batch.rollout_logits)
        return (ll.sum(-1) * row_weights).sum()

    return nnx.grad(f)(policy)


@nnx.jit
def _aux_grads(policy, batch):
    def f(p):
        total, count = aux_mask_loss(p(batch).mask_logits, batch.gt_masks, batch.gt_valid)
        return total / count

    return nnx.grad(f)(policy)


def _flat(tree):
    return np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])


@pytest.fixture(scope="module")
def policy(qwen_config):
    return make_policy(qwen_config)


def _batch(policy, config, advantages=(1.5, -0.7), counts=None):
    batch = make_batch(config, advantages=advantages, counts=counts)
    ref = np.asarray(_forward(policy, batch).logp) - 0.3
    return batch.replace(policy=batch.policy.replace(ref_logp=ref))


def test_calibrated_logp_equals_text_logp_plus_mask_term(policy, qwen_config):
    batch = _batch(policy, qwen_config)
    fwd = _forward(policy, batch)
    ll = mask_loglik(fwd.mask_logits, batch.rollout_logits)
    cal = calibrate_seg_logprobs(fwd.logp, seg_positions(batch.seg_index), ll, batch.mask_count)
    diff = np.asarray(cal - fwd.logp)
    for row in range(2):  # [SEG] at inputs 12, 17 -> log-probs 11, 16; the prompt's one not
        assert np.flatnonzero(diff[row]).tolist() == [11, 16]
        np.testing.assert_allclose(diff[row, [11, 16]], np.asarray(ll)[row], rtol=1e-6)


def test_gradient_is_advantage_times_mask_loglik_gradient(policy, qwen_config):
    """On-policy surrogate -exp(logp~ - sg) A, averaged over each row's n_b policy tokens and
    over the 2 rows: on the mask path (projector, decoder) its gradient is exactly
    -sum_b A_b / (2 n_b) grad l_mask(b), so descent raises the rollout mask's likelihood in
    the row with A > 0 and lowers it in the row with A < 0."""
    adv = np.asarray([1.5, -0.7])
    batch = _batch(policy, qwen_config, tuple(adv))
    g = _grads(policy, batch, CALIBRATED)
    n = np.asarray(batch.policy.loss_mask.sum(-1))
    gl = _ll_grads(policy, batch, jnp.asarray(-adv / (2 * n), jnp.float32))
    for part in ("projector", "decoder"):
        got, want = _flat(getattr(g, part)), _flat(getattr(gl, part))
        assert np.abs(got).max() > 0, part
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-7)
    for row, a in enumerate(adv):  # per row: the update direction -g against grad l_mask(row)
        w = np.zeros(2, np.float32)
        w[row] = 1.0
        ll_row = _flat(_ll_grads(policy, batch, jnp.asarray(w)).decoder)
        g_row = _flat(_ll_grads(policy, batch, jnp.asarray(-a * w / (2 * n))).decoder)
        assert np.sign(-np.dot(g_row, ll_row)) == np.sign(a)


def test_gradient_reaches_seg_hidden_state_and_the_llm(policy, qwen_config):
    batch = _batch(policy, qwen_config)
    fwd = _forward(policy, batch)

    def ll_of(h):
        m = policy.decode_masks(h, batch.image_embed, batch.high_res_feats)
        return mask_loglik(m, batch.rollout_logits).sum()

    assert float(jnp.abs(jax.grad(ll_of)(fwd.seg_hidden)).max()) > 0
    g_on = _flat(_grads(policy, batch, CALIBRATED).qwen)
    g_off = _flat(_grads(policy, batch, UNCALIBRATED).qwen)
    assert np.abs(g_on - g_off).max() > 1e-7  # the [SEG] hidden state carries it into the LLM


def test_without_calibration_decoder_learns_only_from_aux(policy, qwen_config):
    """Calibration off: policy + KL send the decoder and projector nothing; with the aux
    loss on, the decoder gradient is exactly the aux loss's."""
    batch = _batch(policy, qwen_config)
    g = _grads(policy, batch, UNCALIBRATED)
    for part in ("projector", "decoder"):
        assert np.abs(_flat(getattr(g, part))).max() == 0.0
    g_all = _grads(policy, batch, AUX_ONLY_MASK)
    g_aux = _aux_grads(policy, batch)
    want = _flat(g_aux.decoder)  # aux_mask_loss default weight is 0.2 too
    np.testing.assert_allclose(_flat(g_all.decoder), want, rtol=1e-5, atol=1e-8)
    assert np.abs(want).max() > 0


def test_kl_uses_text_logprobs_only(policy, qwen_config):
    """KL is taken before injection: same value with calibration on or off (and the
    uncalibrated test above shows it sends the decoder no gradient)."""
    batch = _batch(policy, qwen_config)
    fwd = _forward(policy, batch)
    on = seg_loss_terms(fwd, batch, CALIBRATED)
    off = seg_loss_terms(fwd, batch, UNCALIBRATED)
    assert float(on.kl.total) > 0
    np.testing.assert_allclose(float(on.kl.total), float(off.kl.total), rtol=1e-6)
    assert float(on.policy.total) == pytest.approx(float(off.policy.total), rel=1e-6)  # -A


def test_count_mismatch_leaves_row_uncalibrated(policy, qwen_config):
    batch = _batch(policy, qwen_config, advantages=(1.0, 1.0), counts=[2, 1])
    g = _grads(policy, batch, CALIBRATED)
    n = np.asarray(batch.policy.loss_mask.sum(-1))
    only_row0 = jnp.asarray([-1.0 / (2 * n[0]), 0.0], jnp.float32)
    want = _flat(_ll_grads(policy, batch, only_row0).decoder)
    np.testing.assert_allclose(_flat(g.decoder), want, rtol=1e-4, atol=1e-7)


def test_ppo_clip_old_policy_is_calibrated_with_the_rollout_mask(qwen_config):
    """With PPO clipping the old log-prob of a [SEG] is calibrated with l_mask(R, R): the
    [SEG] ratio is exp(l_mask(F, R) - l_mask(R, R)) (1 when the decoder reproduces R)."""
    from jaxseg.seg.policy import SegForward

    batch = make_batch(qwen_config, advantages=(1.0, -1.0))
    b, length = batch.policy.loss_mask.shape
    logp = jnp.asarray(np.random.default_rng(1).uniform(-3, -0.1, (b, length)), jnp.float32)
    batch = batch.replace(policy=batch.policy.replace(old_logp=np.asarray(logp)))
    cfg = SegLossConfig(grpo=GRPOLossConfig(eps_low=10.0), calibrate=True, aux_weight=0.0)
    r = batch.rollout_logits
    same = SegForward(None, logp, None, r)
    t = seg_loss_terms(same, batch, cfg)
    np.testing.assert_allclose(float(t.policy.total), -(1.0 - 1.0), atol=1e-6)  # -A per row
    shifted = SegForward(None, logp, None, r + 1.0)
    t = seg_loss_terms(shifted, batch, cfg)
    ratio = np.exp(np.asarray(mask_loglik(r + 1.0, r) - mask_loglik(r, r)))  # [B, K]
    n = np.asarray(batch.policy.loss_mask.sum(-1))
    adv = np.asarray([1.0, -1.0])
    want = sum(-adv[i] * ((n[i] - 2) + ratio[i].sum()) / n[i] for i in range(2))
    np.testing.assert_allclose(float(t.policy.total), want, rtol=1e-4)


def test_repeated_slots_mark_the_sampled_frame_decodes():
    """The final [SEG] decoded again on sampled frames repeats its input position: only its
    first slot (on the keyframe) is calibrated."""
    from jaxseg.seg.loss import repeated_slots

    idx = jnp.asarray([[5, 9, 9, 9, -1, -1], [4, -1, -1, -1, -1, -1]], jnp.int32)
    np.testing.assert_array_equal(
        np.asarray(repeated_slots(idx)),
        [[False, False, True, True, False, False], [False] * 6],
    )
