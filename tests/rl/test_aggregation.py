import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg.rl.aggregation import WeightedSum, aggregate

X = jnp.array([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0], [9.0, 9.0, 9.0]])
M = jnp.array([[1, 1, 1], [1, 0, 0], [0, 0, 0]])


def test_modes_hand_computed():
    # token-mean: (1+2+3+4) / 4 tokens = 2.5
    tm = aggregate(X, M, "token-mean")
    assert (float(tm.total), float(tm.weight)) == (10.0, 4.0)
    np.testing.assert_allclose(tm.value(), 2.5)
    # seq-mean-token-mean: row means 2 and 4, empty row 3 ignored -> (2 + 4) / 2 = 3
    sm = aggregate(X, M, "seq-mean-token-mean")
    np.testing.assert_allclose([sm.total, sm.weight], [6.0, 2.0])
    # seq-mean-token-sum-norm with norm 5: (6/5 + 4/5) / 2 rows = 1.0
    sn = aggregate(X, M, "seq-mean-token-sum-norm", norm_length=5)
    np.testing.assert_allclose([sn.total, sn.weight], [2.0, 2.0])
    np.testing.assert_allclose(sn.value(), 1.0)


def test_empty_batch_value_is_zero():
    ws = aggregate(X, jnp.zeros_like(M), "token-mean")
    assert float(ws.value()) == 0.0


def test_weighted_sum_add_and_scale():
    a = WeightedSum(jnp.array(3.0), jnp.array(2.0)) + WeightedSum(jnp.array(1.0), jnp.array(2.0))
    np.testing.assert_allclose(a.value(), 1.0)
    np.testing.assert_allclose(a.scale(2.0).value(), 2.0)


def test_errors():
    with pytest.raises(ValueError, match="norm_length"):
        aggregate(X, M, "seq-mean-token-sum-norm")
    with pytest.raises(ValueError, match="unknown aggregation"):
        aggregate(X, M, "seq-mean-token-sum")
    with pytest.raises(ValueError, match=r"\[B, L\]"):
        aggregate(X[0], M[0], "token-mean")
