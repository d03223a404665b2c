"""Attention over the KV cache (`jaxseg.models.kv_cache.grouped_attention`): grouped-query
heads without repeated K/V equal transformers-style eager attention over repeated heads, and a
group's shared prefix attended in two parts (log-sum-exp merge) equals one softmax over the
prefix copied into every row, for decode steps (L = 1) and appended segments (L > 1)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg.models.kv_cache import KVCache, grouped_attention, split_prefix
from jaxseg.models.layers import masked_softmax_attention

P, G, KV, R, D = 2, 3, 2, 2, 8
S_P, S_S = 11, 6


def _random(shape, seed):
    return jax.random.normal(jax.random.key(seed), shape, jnp.float32)


@pytest.mark.parametrize("length", [1, 4])
def test_grouped_heads_equal_repeated_heads(length):
    b, s = 3, 9
    q, k, v = (
        _random((b, length, KV * R, D), 0),
        _random((b, s, KV, D), 1),
        _random((b, s, KV, D), 2),
    )
    mask = jax.random.bernoulli(jax.random.key(3), 0.7, (b, 1, length, s)).at[..., 0].set(True)
    ours = grouped_attention(q, k, v, mask, D**-0.5)
    rep = lambda x: jnp.repeat(x, R, axis=2)  # noqa: E731
    ref = masked_softmax_attention(q, rep(k), rep(v), mask, D**-0.5)
    np.testing.assert_allclose(ours, ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("length", [1, 4])
def test_two_part_attention_equals_one_softmax_over_the_copied_prefix(length):
    b = P * G
    pk, pv = _random((P, S_P, KV, D), 0), _random((P, S_P, KV, D), 1)
    # left padding in the prompt: the first slots of prompt 1 are pad
    pmask = jnp.ones((P, S_P), bool).at[1, :3].set(False)
    sk, sv = _random((b, S_S, KV, D), 2), _random((b, S_S, KV, D), 3)
    smask = jax.random.bernoulli(jax.random.key(4), 0.8, (b, 1, length, S_S)).at[..., 0].set(True)
    q = _random((b, length, KV * R, D), 5) * 3.0  # sharper softmax: the merge matters more
    prompt = KVCache(keys=(pk,), values=(pv,), key_mask=pmask, index=jnp.int32(S_P))
    shared = split_prefix(prompt, G, S_S)
    assert shared.prefix_keys[0].shape == (P, KV, S_P, D) and shared.keys[0].shape == (
        b,
        S_S,
        KV,
        D,
    )
    two_part = grouped_attention(q, sk, sv, smask, D**-0.5, shared.layer_prefix(0))

    tile = lambda x: jnp.repeat(x, G, axis=0)  # noqa: E731
    full_k = jnp.concatenate([tile(pk), sk], axis=1)
    full_v = jnp.concatenate([tile(pv), sv], axis=1)
    full_mask = jnp.concatenate(
        [jnp.broadcast_to(tile(pmask)[:, None, None, :], (b, 1, length, S_P)), smask], axis=-1
    )
    one_softmax = grouped_attention(q, full_k, full_v, full_mask, D**-0.5)
    np.testing.assert_allclose(two_part, one_softmax, atol=1e-6, rtol=0)
    # and a wrong merge (dropping the prefix part's weight) would be far off
    no_prefix = grouped_attention(q, sk, sv, smask, D**-0.5)
    assert float(jnp.abs(no_prefix - one_softmax).max()) > 1e-2
