import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg.rl.logprobs import next_token_logprobs, token_entropy, token_logprobs


def _np_log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_token_logprobs_match_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 3, 7)).astype(np.float32)
    targets = rng.integers(0, 7, size=(2, 3))
    ref = np.take_along_axis(_np_log_softmax(logits / 0.7), targets[..., None], -1)[..., 0]
    got = token_logprobs(jnp.asarray(logits), jnp.asarray(targets), temperature=0.7)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


def test_bf16_logits_are_upcast():
    logits = jnp.array([[[0.0, 1.0, 2.0]]], jnp.bfloat16)
    out = token_logprobs(logits, jnp.array([[2]]))
    assert out.dtype == jnp.float32


def test_next_token_alignment():
    rng = np.random.default_rng(1)
    logits = jnp.asarray(rng.normal(size=(1, 4, 5)), jnp.float32)
    ids = jnp.array([[1, 2, 3, 4]])
    out = next_token_logprobs(logits, ids)
    assert out.shape == (1, 3)
    np.testing.assert_allclose(out[0, 0], jax.nn.log_softmax(logits[0, 0])[2], rtol=1e-6)


def test_entropy_uniform_and_onehot():
    uniform = jnp.zeros((1, 1, 8))
    np.testing.assert_allclose(token_entropy(uniform), np.log(8), rtol=1e-6)
    peaked = jnp.array([[[100.0, 0.0, 0.0]]])
    np.testing.assert_allclose(token_entropy(peaked), 0.0, atol=1e-6)


def test_shape_errors():
    with pytest.raises(ValueError, match="disagree"):
        token_logprobs(jnp.zeros((1, 2, 3)), jnp.zeros((1, 3), jnp.int32))
    with pytest.raises(ValueError, match="temperature"):
        token_entropy(jnp.zeros((1, 1, 2)), temperature=0.0)
