"""Each KL estimator against the closed form KL(p || q) of two categoricals."""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxseg.rl.kl import kl_k1, kl_k2, kl_k3


def _categoricals(seed, scale):
    rng = np.random.default_rng(seed)
    logits_p = rng.normal(size=6)
    logits_q = logits_p + scale * rng.normal(size=6)
    logp = np.asarray(jax.nn.log_softmax(logits_p), np.float64)
    logq = np.asarray(jax.nn.log_softmax(logits_q), np.float64)
    return logp, logq


def _exact_kl(logp, logq):
    return float(np.sum(np.exp(logp) * (logp - logq)))


def test_exact_expectations_of_k1_and_k3_equal_kl():
    logp, logq = _categoricals(0, 1.0)
    p = np.exp(logp)
    kl = _exact_kl(logp, logq)
    lp, lq = jnp.asarray(logp, jnp.float32), jnp.asarray(logq, jnp.float32)
    # E_p[k1] = sum p (log p - log q) = KL ; E_p[k3] = sum p (q/p - 1 - log q/p) = 1 - 1 + KL
    np.testing.assert_allclose(np.sum(p * np.asarray(kl_k1(lp, lq))), kl, rtol=1e-5)
    np.testing.assert_allclose(np.sum(p * np.asarray(kl_k3(lp, lq))), kl, rtol=1e-5)


def test_monte_carlo_k1_k3_unbiased_k3_lower_variance():
    logp, logq = _categoricals(1, 0.3)
    kl = _exact_kl(logp, logq)
    x = np.random.default_rng(2).choice(6, size=200_000, p=np.exp(logp))
    lp, lq = jnp.asarray(logp[x], jnp.float32), jnp.asarray(logq[x], jnp.float32)
    for est in (kl_k1(lp, lq), kl_k3(lp, lq)):
        est = np.asarray(est, np.float64)
        se = est.std() / np.sqrt(est.size)
        assert abs(est.mean() - kl) < 4 * se
    assert np.var(np.asarray(kl_k3(lp, lq))) < np.var(np.asarray(kl_k1(lp, lq)))


def test_k2_value_bias_vanishes_as_policies_approach():
    # E_p[k2] = KL + O(delta^3), so the relative gap (E[k2] - KL) / KL shrinks like delta
    def rel_gap(scale):
        logp, logq = _categoricals(3, scale)
        kl = _exact_kl(logp, logq)
        ek2 = np.sum(np.exp(logp) * np.asarray(kl_k2(jnp.asarray(logp), jnp.asarray(logq))))
        return abs(ek2 - kl) / kl

    coarse, fine = rel_gap(0.1), rel_gap(0.01)
    assert fine < 0.02
    assert fine < 0.2 * coarse


def test_k2_gradient_is_unbiased_for_kl_gradient():
    # sum_x p(x) d/dtheta k2(x) with the sampling p held fixed == d/dtheta KL(p_theta || q)
    rng = np.random.default_rng(4)
    theta = jnp.asarray(rng.normal(size=5))
    logq = jax.nn.log_softmax(jnp.asarray(rng.normal(size=5)))

    def kl_exact(th):
        lp = jax.nn.log_softmax(th)
        return jnp.sum(jnp.exp(lp) * (lp - logq))

    def surrogate(th):
        lp = jax.nn.log_softmax(th)
        weights = jax.lax.stop_gradient(jnp.exp(lp))
        return jnp.sum(weights * kl_k2(lp, logq))

    np.testing.assert_allclose(jax.grad(surrogate)(theta), jax.grad(kl_exact)(theta), atol=1e-6)


@settings(max_examples=50, deadline=None)
@given(st.floats(-30, 30), st.floats(-30, 30))
def test_k3_and_k2_nonnegative_and_finite(a, b):
    lp, lq = jnp.array([[a]]), jnp.array([[b]])
    k3 = float(kl_k3(lp, lq)[0, 0])
    assert np.isfinite(k3) and k3 >= 0
    assert float(kl_k2(lp, lq)[0, 0]) >= 0
    np.testing.assert_allclose(float(kl_k1(lp, lq)[0, 0]), a - b, rtol=1e-5, atol=1e-5)
