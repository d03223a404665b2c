"""Sampling filters: top-k never leaves the top k, top-p keeps the smallest
nucleus, temperature -> 0 is greedy, draws follow the filtered softmax, and the returned
log-probs are the raw model distribution's."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from jaxseg.sampling import SamplingParams, sample_tokens, truncated_logits

VOCAB = 12
logit_rows = arrays(
    np.float32,
    (3, VOCAB),
    elements=st.floats(-8, 8, width=32, allow_nan=False),
)


# k and temperature are static (compiled in): a few values keep the test fast
def keys(n, seed):
    return jax.random.split(jax.random.key(seed), n)


@settings(max_examples=25, deadline=None)
@given(
    logit_rows,
    st.sampled_from([1, 3, VOCAB]),
    st.sampled_from([0.5, 1.5]),
    st.integers(0, 2**16),
)
def test_top_k_never_samples_outside_the_top_k(logits, k, temperature, seed):
    params = SamplingParams(temperature=temperature, top_k=k)
    draws = jax.vmap(lambda s: sample_tokens(jnp.asarray(logits), keys(3, s), params)[0])(
        jnp.arange(64) + seed
    )
    draws = np.asarray(draws)  # [64, 3]
    for b in range(3):
        kth = np.sort(logits[b])[::-1][k - 1]
        assert (logits[b][draws[:, b]] >= kth).all()


@settings(max_examples=25, deadline=None)
@given(logit_rows, st.floats(0.05, 0.99), st.floats(0.3, 2.0))
def test_top_p_keeps_the_smallest_nucleus(logits, top_p, temperature):
    params = SamplingParams(temperature=temperature, top_p=top_p)
    scaled, indices = truncated_logits(jnp.asarray(logits), params)
    scaled, indices = np.asarray(scaled), np.asarray(indices)
    probs = np.asarray(jax.nn.softmax(jnp.asarray(logits) / temperature, axis=-1))
    for b in range(3):
        kept = indices[b][np.isfinite(scaled[b])]
        mass = probs[b][kept].sum()
        assert mass >= top_p - 1e-5  # reaches top_p ...
        # ... and is minimal: without its least likely member it would not
        assert mass - probs[b][kept].min() < top_p + 1e-5
        # and it is a head: every kept token is at least as likely as every dropped one
        dropped = np.setdiff1d(np.arange(VOCAB), kept)
        if dropped.size:
            assert probs[b][kept].min() >= probs[b][dropped].max() - 1e-7


@settings(max_examples=25, deadline=None)
@given(logit_rows, st.integers(0, 2**16))
def test_temperature_to_zero_equals_greedy(logits, seed):
    # distinct maxima, so argmax is well defined
    logits = logits + np.arange(VOCAB, dtype=np.float32) * 1e-3
    greedy, lp_g, slp_g = sample_tokens(jnp.asarray(logits), keys(3, seed), SamplingParams(0.0))
    cold, lp_c, _ = sample_tokens(jnp.asarray(logits), keys(3, seed), SamplingParams(1e-6))
    np.testing.assert_array_equal(greedy, np.argmax(logits, -1))
    np.testing.assert_array_equal(cold, greedy)
    np.testing.assert_allclose(lp_c, lp_g, rtol=0, atol=0)
    np.testing.assert_array_equal(slp_g, 0.0)


@settings(max_examples=15, deadline=None)
@given(logit_rows, st.integers(0, 2**16))
def test_returned_logprob_is_the_raw_distribution(logits, seed):
    params = SamplingParams(temperature=0.5, top_k=4, top_p=0.8)
    tokens, logprob, sampling = sample_tokens(jnp.asarray(logits), keys(3, seed), params)
    raw = np.asarray(jax.nn.log_softmax(jnp.asarray(logits), -1))
    np.testing.assert_allclose(logprob, raw[np.arange(3), tokens], atol=1e-6)
    scaled, indices = truncated_logits(jnp.asarray(logits), params)
    filt = np.asarray(jax.nn.log_softmax(scaled, -1))
    col = [int(np.flatnonzero(np.asarray(indices[b]) == tokens[b])[0]) for b in range(3)]
    np.testing.assert_allclose(sampling, filt[np.arange(3), col], atol=1e-6)


@pytest.mark.parametrize(
    "params",
    [SamplingParams(1.0), SamplingParams(0.7, top_k=3), SamplingParams(1.3, top_p=0.8)],
    ids=["plain", "top_k", "top_p"],
)
def test_draw_frequencies_follow_the_filtered_softmax(params):
    logits = jnp.asarray([[2.0, 1.5, 1.0, 0.0, -1.0, -3.0]])
    n = 20_000
    tokens = jax.vmap(lambda k: sample_tokens(logits, k[None], params)[0][0])(keys(n, 0))
    freq = np.bincount(np.asarray(tokens), minlength=6) / n
    scaled, indices = truncated_logits(logits, params)
    expect = np.zeros(6)
    probs = np.asarray(jax.nn.softmax(scaled, -1))[0]
    idx = np.arange(6) if indices is None else np.asarray(indices)[0]
    expect[idx] = probs
    # 5 sigma of a binomial proportion at n = 20k
    sigma = np.sqrt(np.maximum(expect * (1 - expect), 1e-12) / n)
    assert (np.abs(freq - expect) <= 5 * sigma + 1e-9).all(), (freq, expect)
    assert (freq[expect == 0] == 0).all()


def test_invalid_params_are_rejected():
    with pytest.raises(ValueError, match="temperature"):
        SamplingParams(temperature=-1)
    with pytest.raises(ValueError, match="top_k"):
        SamplingParams(top_k=-2)
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(top_p=0.0)


def test_suppressed_tokens_are_never_emitted():
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxseg.sampling.filters import SamplingParams, sample_tokens

    logits = jnp.asarray(np.random.default_rng(0).normal(size=(64, 12)), jnp.float32)
    logits = logits.at[:, 3].set(10.0)  # the favourite everywhere
    keys = jax.random.split(jax.random.key(0), 64)
    for params in (
        SamplingParams(temperature=0.0, suppress_tokens=(3,)),
        SamplingParams(temperature=1.0, top_p=0.9, suppress_tokens=(3, 5)),
    ):
        tokens, logprob, _ = sample_tokens(logits, keys, params)
        assert not np.isin(np.asarray(tokens), params.suppress_tokens).any()
        raw = jax.nn.log_softmax(logits, axis=-1)  # reported log-probs stay unsuppressed
        np.testing.assert_allclose(logprob, raw[jnp.arange(64), tokens], rtol=1e-6)


def _sorted_top_p_reference(logits, keys_, params):
    """Top-p by sorting the whole vocabulary (the formula before the nucleus probe)."""
    values, indices = jax.lax.top_k(logits, logits.shape[-1])
    scaled = values / params.temperature
    probs = jax.nn.softmax(scaled, axis=-1)
    keep = ((jnp.cumsum(probs, -1) - probs) < params.top_p).at[..., 0].set(True)
    scaled = jnp.where(keep, scaled, -jnp.inf)
    choice = jax.vmap(jax.random.categorical)(keys_, scaled)
    tokens = jnp.take_along_axis(indices, choice[:, None], -1)[:, 0]
    sampling_lp = jnp.take_along_axis(jax.nn.log_softmax(scaled, -1), choice[:, None], -1)[:, 0]
    return tokens, sampling_lp


@pytest.mark.parametrize("sharpness", [6.0, 0.05])  # nucleus inside the probe / longer
def test_top_p_probe_draws_what_the_full_sort_draws(sharpness):
    from jaxseg.sampling.filters import NUCLEUS_PROBE

    vocab, rows, params = 3000, 6, SamplingParams(temperature=0.9, top_p=0.9)
    logits = jax.random.normal(jax.random.key(1), (rows, vocab)) * sharpness
    probs = np.asarray(jax.nn.softmax(logits / params.temperature, -1))
    nucleus = (np.cumsum(-np.sort(-probs, -1), -1) < params.top_p).sum(-1) + 1
    assert (nucleus < NUCLEUS_PROBE).all() == (sharpness > 1)  # both branches are exercised
    for seed in range(5):
        k = keys(rows, seed)
        tokens, _, sampling_lp = sample_tokens(logits, k, params)
        ref_tokens, ref_lp = _sorted_top_p_reference(logits, k, params)
        np.testing.assert_array_equal(tokens, ref_tokens)
        np.testing.assert_allclose(sampling_lp, ref_lp, atol=1e-5, rtol=0)
