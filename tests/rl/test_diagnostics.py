import jax.numpy as jnp
import numpy as np

from jaxseg.rl.diagnostics import policy_diagnostics


def test_diagnostics_hand_computed():
    old = jnp.zeros((1, 4))
    logp = jnp.log(jnp.array([[1.5, 0.5, 1.0, 2.0]]))
    mask = jnp.array([[1, 1, 1, 0]])  # last token ignored
    adv = jnp.array([1.0])
    d = policy_diagnostics(logp, old, adv, mask, eps_low=0.2, ref_logp=old, sampler_logp=logp + 0.1)
    # masked ratios 1.5, 0.5, 1.0 -> mean 1.0, min 0.5, max 1.5
    np.testing.assert_allclose([d["ratio_mean"], d["ratio_min"], d["ratio_max"]], [1.0, 0.5, 1.5])
    # A > 0: only ratio 1.5 > 1.2 is clipped (high); 0.5 < 0.8 is not clipped for A > 0
    np.testing.assert_allclose([d["clip_frac_high"], d["clip_frac_low"]], [1 / 3, 0.0])
    np.testing.assert_allclose(d["sampler_logp_abs_diff_mean"], 0.1, rtol=1e-5)
    # kl_k3(logp, ref) uses d = ref - logp = -log r: exp(d) - d - 1 = 1/r + log r - 1
    k3 = ((1 / 1.5 + np.log(1.5) - 1) + (1 / 0.5 + np.log(0.5) - 1)) / 3
    np.testing.assert_allclose(d["kl_k3"], k3, rtol=1e-5)
    np.testing.assert_allclose(d["num_tokens"], 3.0)
    # probabilities exp(logp) and exp(logp + 0.1) are perfectly correlated
    np.testing.assert_allclose(d["sampler_prob_corr"], 1.0, rtol=1e-5)
