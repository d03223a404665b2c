"""Next-token sampling from logits: greedy, temperature, top-k, top-p (pure, jit-friendly).

Order and conventions follow transformers' logits warpers (temperature, then top-k, then top-p
on the tempered probabilities; top-p keeps the smallest head whose mass reaches `top_p`, always
at least one token). Top-k samples among the `k` indices `lax.top_k` returns, so a token outside
the top-k can never be drawn, even with ties at the k-th value.

Two log-probabilities come out of `sample_tokens`:

* `logprob`: log softmax of the *raw* logits (temperature 1, full vocabulary) at the drawn token,
  float32 — the distribution the trainer's teacher-forced `jaxseg.rl.logprobs.token_logprobs`
  computes with its default `temperature=1`. GRPO importance ratios use this one.
* `sampling_logprob`: log-prob of the drawn token under the distribution it was actually drawn
  from (tempered, truncated by top-k/top-p); 0 for greedy. Useful for off-policy corrections.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class SamplingParams:
    """Static (hashable) sampling settings; changing them recompiles the decode loop.

    temperature: 0 = greedy (argmax of the raw logits); > 0 scales logits by 1/temperature.
    top_k: 0 = off; else sample among the k most likely tokens.
    top_p: 1.0 = off; else nucleus sampling over the tempered (and top-k-truncated) probs.
    suppress_tokens: ids never emitted (greedy and sampled), e.g. the image/video placeholder
    and vision start/end tokens, which only the processor may place. The returned `logprob`
    stays under the raw model distribution; `sampling_logprob` reflects the suppression.
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    suppress_tokens: tuple[int, ...] = ()

    def __post_init__(self):
        if not self.temperature >= 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if int(self.top_k) != self.top_k or self.top_k < 0:
            raise ValueError(f"top_k must be an int >= 0 (0 = off), got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def raw_log_probs(logits: jax.Array) -> jax.Array:
    """log softmax over the full vocabulary at temperature 1, float32: `[..., V] -> [..., V]`."""
    return jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)


NUCLEUS_PROBE = 64  # top-p tries this many best tokens before sorting the whole vocabulary


def truncated_logits(
    logits: jax.Array, params: SamplingParams
) -> tuple[jax.Array, jax.Array | None]:
    """Tempered logits over the candidate set, `[B, K]`, and the candidates' vocabulary ids
    `[B, K]` (None when the candidates are the whole vocabulary in order).

    Tokens removed by top-p get -inf. Requires `params.temperature > 0`.

    Top-p alone (no top-k) first looks at the `NUCLEUS_PROBE` best tokens: when every row's
    nucleus ends inside them, the rest of the (sorted) candidate list is -inf anyway and the
    full sort of the vocabulary is skipped (a `lax.cond`; 152k-token vocabularies make that
    sort the most expensive op of a decode step). Both branches give the same `[B, V]` list,
    so the draws do not change; the nucleus mass is normalised over the unsorted vocabulary
    (float sums differ in the last bit, which moves the nucleus edge only for a token whose
    preceding mass equals `top_p` to ~1e-7)."""
    logits = logits.astype(jnp.float32)
    vocab = logits.shape[-1]
    if not (params.top_k or params.top_p < 1.0):
        return logits / params.temperature, None
    k = min(params.top_k, vocab) if params.top_k else vocab
    if params.top_p < 1.0 and k == vocab and vocab > NUCLEUS_PROBE:
        return _nucleus_probe(logits, params)
    values, indices = jax.lax.top_k(logits, k)  # sorted, descending
    return _top_p(values / params.temperature, params.top_p), indices


def _top_p(scaled: jax.Array, top_p: float, probs: jax.Array | None = None) -> jax.Array:
    """-inf outside the smallest head of the sorted `scaled [B, K]` whose mass reaches `top_p`
    (`probs`: the candidates' probabilities, default the softmax of `scaled`)."""
    if top_p >= 1.0:
        return scaled
    probs = jax.nn.softmax(scaled, axis=-1) if probs is None else probs
    mass_before = jnp.cumsum(probs, axis=-1) - probs  # mass of strictly better-ranked tokens
    keep = (mass_before < top_p).at[..., 0].set(True)
    return jnp.where(keep, scaled, -jnp.inf)


def _nucleus_probe(logits: jax.Array, params: SamplingParams) -> tuple[jax.Array, jax.Array]:
    """Top-p over the whole vocabulary, sorting it only when some row's nucleus is longer than
    `NUCLEUS_PROBE` tokens (see `truncated_logits`). `[B, V]` -> (`[B, V]`, ids `[B, V]`)."""
    b, vocab = logits.shape
    scaled_all = logits / params.temperature
    peak = jnp.max(scaled_all, axis=-1, keepdims=True)
    total = jnp.sum(jnp.exp(scaled_all - peak), axis=-1, keepdims=True)
    values, ids = jax.lax.top_k(logits, NUCLEUS_PROBE)
    scaled = values / params.temperature
    head = _top_p(scaled, params.top_p, jnp.exp(scaled - peak) / total)
    inside = jnp.all(head[:, -1] == -jnp.inf)  # every nucleus ends before the last probe

    def probed(_):
        rest = jnp.full((b, vocab - NUCLEUS_PROBE), -jnp.inf, jnp.float32)
        pad = jnp.zeros((b, vocab - NUCLEUS_PROBE), ids.dtype)
        return jnp.concatenate([head, rest], -1), jnp.concatenate([ids, pad], -1)

    def full(_):
        values, indices = jax.lax.top_k(logits, vocab)
        return _top_p(values / params.temperature, params.top_p), indices

    return jax.lax.cond(inside, probed, full, None)


def sample_tokens(
    logits: jax.Array, keys: jax.Array, params: SamplingParams
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Draws one token per row. logits `[B, V]`, keys `[B]` (one PRNG key per row, so a row's
    draw does not depend on the batch it sits in).

    Returns tokens `[B]` int32, `logprob [B]` (raw model distribution, see module docstring) and
    `sampling_logprob [B]` (distribution actually sampled from)."""
    logp_raw = raw_log_probs(logits)
    if params.suppress_tokens:
        ids = jnp.asarray(params.suppress_tokens, jnp.int32)
        logits = logits.astype(jnp.float32).at[..., ids].set(-jnp.inf)
    if params.greedy:
        tokens = jnp.argmax(logits, axis=-1).astype(jnp.int32)
        sampling = jnp.zeros(tokens.shape, jnp.float32)
    else:
        scaled, indices = truncated_logits(logits, params)
        choice = jax.vmap(lambda k, row: jax.random.categorical(k, row))(keys, scaled)
        logp_s = jax.nn.log_softmax(scaled, axis=-1)
        sampling = jnp.take_along_axis(logp_s, choice[:, None], axis=-1)[:, 0]
        if indices is None:
            tokens = choice.astype(jnp.int32)
        else:
            tokens = jnp.take_along_axis(indices, choice[:, None], axis=-1)[:, 0].astype(jnp.int32)
    logprob = jnp.take_along_axis(logp_raw, tokens[:, None], axis=-1)[:, 0]
    return tokens, logprob, sampling
