import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg.rl.policy_loss import broadcast_advantages, on_policy_loss, ppo_clip_loss


def test_ppo_clip_hand_computed():
    old = jnp.zeros((1, 4))
    # ratios e^{log r}: 1.5, 0.5, 1.5, 0.5 with advantages +1, -1, -1, +1, eps 0.2
    logp = jnp.log(jnp.array([[1.5, 0.5, 1.5, 0.5]]))
    adv = jnp.array([[1.0, -1.0, -1.0, 1.0]])
    loss = ppo_clip_loss(logp, old, adv, eps_low=0.2)
    # tok0: -min(1.5, 1.2) = -1.2 ; tok1: -min(-0.5, -0.8) = 0.8
    # tok2: -min(-1.5, -1.2) = 1.5 ; tok3: -min(0.5, 0.8) = -0.5
    np.testing.assert_allclose(loss, [[-1.2, 0.8, 1.5, -0.5]], rtol=1e-6)
    grad = jax.grad(lambda lp: ppo_clip_loss(lp, old, adv, eps_low=0.2).sum())(logp)
    # clipped tokens (0, 1) have zero gradient; the others -A * r
    np.testing.assert_allclose(grad, [[0.0, 0.0, 1.5, -0.5]], rtol=1e-6)


def test_clip_higher_is_asymmetric():
    old = jnp.zeros((1, 1))
    logp = jnp.log(jnp.array([[1.25]]))
    adv = jnp.ones((1, 1))
    # eps_high 0.28 (DAPO): 1.25 is inside [0.8, 1.28] -> -1.25 ; eps 0.2 clips to -1.2
    np.testing.assert_allclose(ppo_clip_loss(logp, old, adv, eps_high=0.28), [[-1.25]], rtol=1e-6)
    np.testing.assert_allclose(ppo_clip_loss(logp, old, adv), [[-1.2]], rtol=1e-6)


def test_on_policy_value_and_gradient():
    logp = jnp.array([[-0.3, -2.0], [-1.0, -0.1]])
    adv = jnp.array([2.0, -1.0])
    np.testing.assert_allclose(on_policy_loss(logp, adv), [[-2.0, -2.0], [1.0, 1.0]])
    grad = jax.grad(lambda lp: on_policy_loss(lp, adv).sum())(logp)
    np.testing.assert_allclose(grad, [[-2.0, -2.0], [1.0, 1.0]])


def test_huge_log_ratio_stays_finite():
    loss = ppo_clip_loss(jnp.array([[500.0]]), jnp.array([[0.0]]), jnp.array([-1.0]))
    assert np.isfinite(np.asarray(loss)).all()


def test_broadcast_errors():
    with pytest.raises(ValueError, match="do not fit"):
        broadcast_advantages(jnp.ones(3), (2, 5))
