"""The GRPO loss at ratio 1 is REINFORCE with group advantages; micro-batches add up."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg.rl.advantages import grpo_advantages
from jaxseg.rl.aggregation import AGGREGATION_MODES, WeightedSum
from jaxseg.rl.logprobs import token_logprobs
from jaxseg.rl.objective import GRPOLossConfig, grpo_loss

B, L, V, G = 8, 5, 6, 4


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    logits = jnp.asarray(rng.normal(size=(B, L, V)), jnp.float32)
    targets = jnp.asarray(rng.integers(0, V, size=(B, L)))
    mask = rng.random((B, L)) < 0.7
    mask[3] = False  # an empty row (e.g. a truncated rollout) must not count
    mask[:, 0] = mask[:, 0] | (np.arange(B) != 3)
    rewards = jnp.asarray(rng.integers(0, 3, size=B), jnp.float32)
    ref_logits = logits + 0.3 * jnp.asarray(rng.normal(size=(B, L, V)), jnp.float32)
    ref_logp = token_logprobs(ref_logits, targets)
    return logits, targets, jnp.asarray(mask), rewards, ref_logp


def _analytic_reinforce_grad(logits, targets, mask, adv, mode):
    """d/dlogits of -(1/D) sum_b w_b A_b sum_t m_bt log softmax(logits)[y_bt].

    For a softmax, d log p(y) / d logits = onehot(y) - p. Per-token weights w_bt:
    token-mean 1/sum(m); seq-mean-token-mean 1/(n_b * rows).
    """
    p = np.asarray(jax.nn.softmax(logits, -1))
    onehot = np.eye(V)[np.asarray(targets)]
    m = np.asarray(mask, np.float64)
    n_b = m.sum(-1)
    rows = (n_b > 0).sum()
    if mode == "token-mean":
        w = m / m.sum()
    else:
        w = m / np.maximum(n_b, 1)[:, None] / rows
    coef = -(np.asarray(adv)[:, None] * w)[..., None]
    return coef * (onehot - p)


@pytest.mark.parametrize("policy", ["ppo_clip", "on_policy"])
@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-mean"])
def test_ratio_one_gradient_is_group_reinforce(policy, mode):
    logits, targets, mask, rewards, _ = _batch()
    adv = grpo_advantages(rewards, G)
    cfg = GRPOLossConfig(policy_loss=policy, aggregation=mode)

    def loss_fn(lg):
        return grpo_loss(token_logprobs(lg, targets), adv, mask, cfg).total.value()

    value, grad = jax.value_and_grad(loss_fn)(logits)
    expected = _analytic_reinforce_grad(logits, targets, mask, adv, mode)
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-7)
    # at ratio 1 the surrogate's value is -(weighted mean of A)
    w_adv = grpo_loss(jnp.zeros((B, L)), adv, mask, cfg).total.value()
    np.testing.assert_allclose(value, w_adv, rtol=1e-6)


@pytest.mark.parametrize("mode", AGGREGATION_MODES)
@pytest.mark.parametrize("policy", ["ppo_clip", "on_policy"])
def test_micro_batch_accumulation_is_exact(mode, policy):
    logits, targets, mask, rewards, ref_logp = _batch(1)
    adv = grpo_advantages(rewards, G)
    old_logp = token_logprobs(logits + 0.05, targets) if policy == "ppo_clip" else None
    cfg = GRPOLossConfig(policy_loss=policy, aggregation=mode, kl_coef=0.04, norm_length=L)

    def terms(lg, rows):
        return grpo_loss(
            token_logprobs(lg[rows], targets[rows]),
            adv[rows],
            mask[rows],
            cfg,
            old_logp=None if old_logp is None else old_logp[rows],
            ref_logp=ref_logp[rows],
        ).total

    full = np.arange(B)
    full_value, full_grad = jax.value_and_grad(lambda lg: terms(lg, full).value())(logits)

    # accumulate numerators' gradients and denominators over two micro-batches, divide once
    acc, grad_num = None, jnp.zeros_like(logits)
    for rows in (np.arange(0, 4), np.arange(4, 8)):
        ws = terms(logits, rows)
        acc = ws if acc is None else acc + ws
        grad_num = grad_num + jax.grad(lambda lg, r=rows: terms(lg, r).total)(logits)
    np.testing.assert_allclose(acc.value(), full_value, rtol=1e-6)
    np.testing.assert_allclose(grad_num / acc.weight, full_grad, rtol=1e-5, atol=1e-8)


def test_kl_term_added_with_coefficient():
    logits, targets, mask, rewards, ref_logp = _batch(2)
    adv = grpo_advantages(rewards, G)
    logp = token_logprobs(logits, targets)
    base = grpo_loss(logp, adv, mask, GRPOLossConfig(kl_coef=0.0))
    with_kl = grpo_loss(logp, adv, mask, GRPOLossConfig(kl_coef=0.5), ref_logp=ref_logp)
    np.testing.assert_allclose(
        with_kl.total.value(), base.total.value() + 0.5 * with_kl.kl.value(), rtol=1e-6
    )
    assert float(with_kl.kl.value()) > 0  # k3 >= 0 and the policies differ


def test_jit_over_the_loss():
    logits, targets, mask, rewards, ref_logp = _batch(3)
    adv = grpo_advantages(rewards, G)
    cfg = GRPOLossConfig(kl_coef=0.01)
    f = jax.jit(lambda lp: grpo_loss(lp, adv, mask, cfg, ref_logp=ref_logp))
    out = f(token_logprobs(logits, targets))
    assert isinstance(out.total, WeightedSum)


def test_config_errors():
    with pytest.raises(ValueError, match="policy_loss"):
        GRPOLossConfig(policy_loss="ppo")
    with pytest.raises(ValueError, match="kl_estimator"):
        GRPOLossConfig(kl_estimator="k4")
    with pytest.raises(ValueError, match="aggregation"):
        GRPOLossConfig(aggregation="mean")
    with pytest.raises(ValueError, match="ref_logp"):
        grpo_loss(jnp.zeros((2, 2)), jnp.zeros(2), jnp.ones((2, 2)), GRPOLossConfig(kl_coef=0.1))


def test_observation_tokens_get_no_gradient():
    """Only the policy's own tokens carry loss: user (0) and observation (3, 4) tokens are
    masked out, the assistant's (1, 2) are not."""
    logits, targets, _, rewards, _ = _batch(4)
    mask = jnp.zeros((B, L)).at[:, 1:3].set(1.0)
    adv = grpo_advantages(rewards, G)
    grad = jax.grad(
        lambda lg: grpo_loss(token_logprobs(lg, targets), adv, mask, GRPOLossConfig()).total.value()
    )(logits)
    assert np.all(np.asarray(grad)[:, [0, 3, 4]] == 0.0)
    assert np.any(np.asarray(grad)[:, 1:3] != 0.0)
