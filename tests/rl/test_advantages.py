import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxseg.rl.advantages import (
    GroupBoundaryError,
    drgrpo_advantages,
    grpo_advantages,
    rloo_advantages,
)


def test_grpo_hand_computed():
    # group [1, 2, 3, 4]: mean 2.5; deviations -1.5 -0.5 0.5 1.5;
    # ddof=1 variance = (2.25 + 0.25 + 0.25 + 2.25) / 3 = 5/3, std = 1.2909944
    # A = dev / (std + 1e-6) -> [-1.161895, -0.387298, 0.387298, 1.161895]
    adv = grpo_advantages(jnp.array([1.0, 2.0, 3.0, 4.0]), 4)
    std = np.sqrt(5 / 3)
    np.testing.assert_allclose(adv, np.array([-1.5, -0.5, 0.5, 1.5]) / (std + 1e-6), rtol=1e-6)
    # ddof=0: variance 5/4, std 1.118034
    adv0 = grpo_advantages(jnp.array([1.0, 2.0, 3.0, 4.0]), 4, ddof=0, eps=0.0)
    np.testing.assert_allclose(adv0, np.array([-1.5, -0.5, 0.5, 1.5]) / np.sqrt(1.25), rtol=1e-6)


def test_drgrpo_and_rloo_hand_computed():
    r = jnp.array([0.0, 1.0, 5.0, 2.0])  # one group of 4, mean 2
    np.testing.assert_allclose(drgrpo_advantages(r, 4), [-2.0, -1.0, 3.0, 0.0], atol=1e-6)
    # RLOO: r_i - mean of the other three: 0-8/3, 1-7/3, 5-3/3, 2-6/3
    np.testing.assert_allclose(
        rloo_advantages(r, 4), [-8 / 3, 1 - 7 / 3, 4.0, 0.0], rtol=1e-6, atol=1e-6
    )


@pytest.mark.parametrize("fn", [grpo_advantages, drgrpo_advantages, rloo_advantages])
def test_zero_variance_group_gives_exact_zero(fn):
    # 0.1 is not exactly representable: the mean of four copies may round, the check may not
    r = jnp.array([0.1, 0.1, 0.1, 0.1, 0.0, 1.0, 0.0, 1.0])
    adv = np.asarray(fn(r, 4))
    assert np.all(adv[:4] == 0.0)
    assert np.all(adv[4:] != 0.0)


@pytest.mark.parametrize("fn", [grpo_advantages, drgrpo_advantages, rloo_advantages])
def test_split_group_raises(fn):
    with pytest.raises(GroupBoundaryError, match="split"):
        fn(jnp.arange(6.0), 4)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 4).flatmap(
        lambda n: st.integers(2, 6).flatmap(
            lambda g: st.tuples(
                st.just(g),
                st.lists(st.integers(-5, 5), min_size=n * g, max_size=n * g),
            )
        )
    )
)
def test_estimator_properties(case):
    g, values = case
    r = jnp.array(values, jnp.float32)
    groups = np.asarray(r).reshape(-1, g)
    dr = np.asarray(drgrpo_advantages(r, g)).reshape(-1, g)
    np.testing.assert_allclose(dr.sum(-1), 0.0, atol=1e-4)
    rl = np.asarray(rloo_advantages(r, g)).reshape(-1, g)
    np.testing.assert_allclose(rl, dr * g / (g - 1), atol=1e-4)
    gr = np.asarray(grpo_advantages(r, g, eps=0.0)).reshape(-1, g)
    for grp, adv in zip(groups, gr):
        if np.ptp(grp) == 0:
            assert np.all(adv == 0)
        else:
            np.testing.assert_allclose(adv.mean(), 0.0, atol=1e-5)
            np.testing.assert_allclose(adv.std(ddof=1), 1.0, rtol=1e-4)


def test_jit_with_static_group_size():
    f = jax.jit(grpo_advantages, static_argnums=1)
    r = jnp.array([1.0, 0.0, 1.0, 1.0])
    np.testing.assert_allclose(f(r, 2), grpo_advantages(r, 2))
