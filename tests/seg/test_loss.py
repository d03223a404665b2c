"""Issue #10 item 2: the calibration term's value and where its gradient goes."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxseg.rl.objective import GRPOLossConfig
from jaxseg.seg.calibration import mask_loglik
from jaxseg.seg.loss import SegLossConfig, seg_loss_terms, seg_objective

from .conftest import make_batch, make_policy

ON_POLICY = GRPOLossConfig(policy_loss="on_policy", kl_coef=0.0)


def _grads(policy, batch, cfg):
    def f(p):
        t = seg_loss_terms(p(batch), batch, cfg)
        return seg_objective(t, cfg.grpo.kl_coef, t.policy.weight, t.aux.weight)

    return nnx.grad(f)(policy)


def _ll_grads(policy, batch, row=0):
    """grad of the row's summed l_mask (both [SEG]s) w.r.t. every parameter."""

    def f(p):
        fwd = p(batch)
        return mask_loglik(fwd.mask_logits, batch.rollout_logits)[row].sum()

    return nnx.grad(f)(policy)


def _flat(tree):
    return np.concatenate([np.ravel(x) for x in jax.tree.leaves(tree)])


@pytest.fixture(scope="module")
def policy(qwen_config):
    return make_policy(qwen_config)


def test_calibrated_logp_equals_text_logp_plus_mask_term(policy, qwen_config):
    from jaxseg.seg.calibration import calibrate_seg_logprobs
    from jaxseg.seg.loss import seg_positions

    batch = make_batch(qwen_config)
    fwd = policy(batch)
    ll = mask_loglik(fwd.mask_logits, batch.rollout_logits)
    cal = calibrate_seg_logprobs(fwd.logp, seg_positions(batch.seg_index), ll, batch.mask_count)
    diff = np.asarray(cal - fwd.logp)[0]
    assert np.flatnonzero(diff).tolist() == [11, 16]  # [SEG] at inputs 12, 17 -> logp 11, 16
    np.testing.assert_allclose(diff[[11, 16]], np.asarray(ll)[0], rtol=1e-6)


@pytest.mark.parametrize("advantage", [1.5, -0.7])
def test_gradient_is_advantage_times_mask_loglik_gradient(policy, qwen_config, advantage):
    """On-policy surrogate -exp(logp~ - sg)A averaged over the row's n policy tokens: its
    gradient on the mask path (projector, decoder) is exactly -(A / n) grad l_mask, so the
    update raises the rollout mask's likelihood when A > 0 and lowers it when A < 0."""
    batch = make_batch(qwen_config, advantages=(advantage,))
    cfg = SegLossConfig(grpo=ON_POLICY, calibrate=True, aux_weight=0.0)
    g = _grads(policy, batch, cfg)
    gl = _ll_grads(policy, batch)
    n = float(batch.policy.loss_mask.sum())
    for part in ("projector", "decoder"):
        got, ll = _flat(getattr(g, part)), _flat(getattr(gl, part))
        assert np.abs(got).max() > 0, part
        np.testing.assert_allclose(got, -(advantage / n) * ll, rtol=1e-4, atol=1e-7)
        assert np.sign(-np.dot(got, ll)) == np.sign(advantage)  # descent direction


def test_gradient_reaches_seg_hidden_state(policy, qwen_config):
    """d loss / d h_[SEG] is -(A / n) d l_mask / d h (the hidden state feeds the projector)."""
    batch = make_batch(qwen_config, advantages=(1.0,))
    fwd = policy(batch)
    n = float(batch.policy.loss_mask.sum())

    def ll_of(h):
        m = policy.decode_masks(h, batch.image_embed, batch.high_res_feats)
        return mask_loglik(m, batch.rollout_logits).sum()

    gh = jax.grad(ll_of)(fwd.seg_hidden)
    assert float(jnp.abs(gh).max()) > 0
    # and through it into the LLM: the calibrated loss's LLM gradient differs from the text one
    on = SegLossConfig(grpo=ON_POLICY, calibrate=True, aux_weight=0.0)
    off = dataclasses.replace(on, calibrate=False)
    g_on, g_off = _flat(_grads(policy, batch, on).qwen), _flat(_grads(policy, batch, off).qwen)
    assert np.abs(g_on - g_off).max() > 1e-6 / n


def test_without_calibration_decoder_learns_only_from_aux(policy, qwen_config):
    batch = make_batch(qwen_config, advantages=(1.0, -1.0))
    kl = GRPOLossConfig(policy_loss="on_policy", kl_coef=0.04)
    pb = batch.policy.replace(ref_logp=np.asarray(policy(batch).logp) - 0.1)
    batch = batch.replace(policy=pb)
    no_aux = SegLossConfig(grpo=kl, calibrate=False, aux_weight=0.0)
    for part in ("projector", "decoder"):
        assert np.abs(_flat(getattr(_grads(policy, batch, no_aux), part))).max() == 0.0
    with_aux = dataclasses.replace(no_aux, aux_weight=0.2)
    only_aux = SegLossConfig(grpo=kl, calibrate=False, aux_weight=0.2)

    def aux_only(p):
        t = seg_loss_terms(p(batch), batch, only_aux)
        return t.aux.total / t.aux.weight

    g_aux = nnx.grad(aux_only)(policy)
    g_all = _grads(policy, batch, with_aux)
    np.testing.assert_allclose(_flat(g_all.decoder), _flat(g_aux.decoder), rtol=1e-5, atol=1e-8)
    assert np.abs(_flat(g_all.decoder)).max() > 0


def test_kl_uses_text_logprobs_only(policy, qwen_config):
    """KL is computed before injection: its value does not move with calibration and it
    sends no gradient to the decoder."""
    batch = make_batch(qwen_config)
    pb = batch.policy.replace(ref_logp=np.asarray(policy(batch).logp) - 0.3)
    batch = batch.replace(policy=pb)
    g = GRPOLossConfig(policy_loss="on_policy", kl_coef=0.04)
    fwd = policy(batch)
    on = seg_loss_terms(fwd, batch, SegLossConfig(grpo=g, calibrate=True))
    off = seg_loss_terms(fwd, batch, SegLossConfig(grpo=g, calibrate=False))
    np.testing.assert_allclose(float(on.kl.total), float(off.kl.total), rtol=1e-6)

    def kl_only(p):
        return seg_loss_terms(p(batch), batch, SegLossConfig(grpo=g, calibrate=True)).kl.total

    assert np.abs(_flat(nnx.grad(kl_only)(policy).decoder)).max() == 0.0


def test_count_mismatch_leaves_row_uncalibrated(policy, qwen_config):
    batch = make_batch(qwen_config, advantages=(1.0, 1.0), counts=[2, 1])
    cfg = SegLossConfig(grpo=ON_POLICY, calibrate=True, aux_weight=0.0)
    g_row1 = _ll_grads(policy, batch, row=1)
    g = _grads(policy, batch, cfg)
    g_row0 = _ll_grads(policy, batch, row=0)
    n0 = float(batch.policy.loss_mask[0].sum())
    # rows weigh 1/2 each (seq-mean over 2 rows); only row 0 contributes on the mask path
    np.testing.assert_allclose(
        _flat(g.decoder), -(1.0 / (2 * n0)) * _flat(g_row0.decoder), rtol=1e-4, atol=1e-7
    )
    assert np.abs(_flat(g_row1.decoder)).max() > 0
