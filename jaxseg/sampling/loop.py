"""The jitted pieces of the sampler: prefill into a preallocated cache, the decode loop, and the
small cache edits between turns. All take the model as `(graphdef, state)` so the weights are a
jit argument (not a captured constant) and the compiled code is reused across weight updates
(tunix's `generate/sampler.py`). The cache and the loop state are donated, so
XLA updates them in place.

Decode loop (one `lax.while_loop` per turn, as gemma's `Sampler` and tunix's sampler):
every iteration samples one token per row from the current logits, records it, then feeds it
through the decoder (one slot for the whole batch at `cache.index`; the slot is valid only for
rows that were still active), so after the loop the cache holds every generated token and a new
turn can be appended directly. It stops when all rows are done or `T` tokens were drawn.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from jaxseg.models.kv_cache import KVCache, split_prefix

from .batch import SegmentBatch
from .filters import SamplingParams, sample_tokens
from .state import EOS, LENGTH, RUNNING, STOP_STRING, DecodeState
from .stop import NO_TOKEN, StopTable, is_eos, matches_stop


@functools.partial(jax.jit, static_argnames=("graphdef",), donate_argnames=("cache",))
def prefill(
    graphdef: nnx.GraphDef, params: nnx.State, batch: SegmentBatch, cache: KVCache
) -> tuple[jax.Array, KVCache]:
    """Vision tower + merge + decoder over a left-padded segment `[B, L]` written at
    `cache.index`. Returns the last slot's logits `[B, V]` (float32) and the cache."""
    model = nnx.merge(graphdef, params)
    logits, cache = model.forward(
        batch.input_ids,
        batch.attention_mask,
        batch.position_ids,
        pixel_values=batch.pixel_values,
        image_layout=batch.image_layout,
        pixel_values_videos=batch.pixel_values_videos,
        video_layout=batch.video_layout,
        kv_cache=cache,
    )
    return logits[:, -1].astype(jnp.float32), cache


@functools.partial(
    jax.jit, static_argnames=("group_size", "suffix_length"), donate_argnames=("cache",)
)
def share_prompt(
    cache: KVCache, logits: jax.Array, next_pos: jax.Array, group_size: int, suffix_length: int
) -> tuple[KVCache, jax.Array, jax.Array]:
    """One prefill shared by G samples: the filled prompt cache (`P` rows) becomes the group's
    shared prefix, held once (`kv_cache.split_prefix`), and each of the `P * G` rows
    (row p*G + g samples prompt p) gets `suffix_length` slots of its own; logits `[P, V]` and
    next positions `[P]` are repeated to `[P * G, ...]`."""
    rows = lambda x: jnp.repeat(x, group_size, axis=0)  # noqa: E731
    return split_prefix(cache, group_size, suffix_length), rows(logits), rows(next_pos)


@functools.partial(jax.jit, static_argnames=("new_length",))
def grow_cache(cache: KVCache, new_length: int) -> KVCache:
    """The same cache with `new_length` slots per row (new slots zero / invalid; a shared prefix
    is kept as it is)."""
    extra = new_length - cache.max_length

    def pad(x):
        return jnp.pad(x, [(0, 0), (0, extra)] + [(0, 0)] * (x.ndim - 2))

    return cache.replace(
        keys=tuple(pad(k) for k in cache.keys),
        values=tuple(pad(v) for v in cache.values),
        key_mask=pad(cache.key_mask),
    )


@functools.partial(jax.jit, donate_argnames=("cache",))
def invalidate_slots(cache: KVCache, start: jax.Array, keep: jax.Array) -> KVCache:
    """Marks slots `>= start + keep[b]` of row b invalid (tokens generated past a stop string
    that only the host-side text check found). `start` scalar, `keep [B]`."""
    slots = jnp.arange(cache.max_length)[None, :]
    return cache.replace(key_mask=cache.key_mask & (slots < start + keep[:, None]))


def _decode_step(model, state: DecodeState, stop: StopTable, pad_id, params: SamplingParams):
    step_key = state.draw_offset + state.step
    keys = jax.vmap(lambda r: jax.random.fold_in(jax.random.fold_in(state.rng, r), step_key))(
        state.row_ids
    )
    tokens, logprob, sampling_lp = sample_tokens(state.logits, keys, params)
    active = state.active
    tokens_out = jnp.where(active, tokens, pad_id)
    col = state.step

    def put(buffer, values):
        return jax.lax.dynamic_update_slice(buffer, values[:, None].astype(buffer.dtype), (0, col))

    window = jnp.concatenate([state.window[:, 1:], tokens[:, None]], axis=1)
    hit_eos = is_eos(tokens, stop) & active
    hit_stop = matches_stop(window, stop) & active & ~hit_eos
    finish = jnp.where(hit_eos, EOS, jnp.where(hit_stop, STOP_STRING, state.finish))
    still = active & ~hit_eos & ~hit_stop

    # Feed the drawn tokens: slot valid only for rows that were active when drawing.
    positions = jnp.broadcast_to(state.next_pos[None, :, None], (3, *tokens.shape, 1))
    logits, cache = model.forward(
        tokens[:, None], active[:, None].astype(jnp.int32), positions, kv_cache=state.cache
    )
    return state.replace(
        cache=cache,
        logits=logits[:, -1].astype(jnp.float32),
        next_pos=state.next_pos + active.astype(jnp.int32),
        active=still,
        step=state.step + 1,
        tokens=put(state.tokens, tokens_out),
        logprobs=put(state.logprobs, jnp.where(active, logprob, 0.0)),
        sampling_logprobs=put(state.sampling_logprobs, jnp.where(active, sampling_lp, 0.0)),
        lengths=state.lengths + active.astype(jnp.int32),
        window=window,
        finish=finish,
    )


@functools.partial(jax.jit, static_argnames=("graphdef", "params"), donate_argnames=("state",))
def decode_loop(
    graphdef: nnx.GraphDef,
    weights: nnx.State,
    state: DecodeState,
    stop: StopTable,
    pad_id: jax.Array,
    params: SamplingParams,
) -> DecodeState:
    """Draws up to `T = state.tokens.shape[1]` tokens per row inside one `lax.while_loop`."""
    model = nnx.merge(graphdef, weights)
    max_new = state.tokens.shape[1]

    def cond(s: DecodeState):
        return (s.step < max_new) & s.active.any()

    def body(s: DecodeState):
        return _decode_step(model, s, stop, pad_id, params)

    state = jax.lax.while_loop(cond, body, state)
    return state.replace(finish=jnp.where(state.finish == RUNNING, LENGTH, state.finish))


def start_turn(
    cache: KVCache,
    logits: jax.Array,
    next_pos: jax.Array,
    row_ids: jax.Array,
    rng: jax.Array,
    draw_offset: int,
    max_new_tokens: int,
    window: int,
    pad_id: int,
    active: jax.Array | None = None,
) -> DecodeState:
    """A fresh loop state for one turn over `cache` with next-token `logits [B, V]`."""
    b = logits.shape[0]
    return DecodeState(
        cache=cache,
        logits=logits,
        next_pos=jnp.asarray(next_pos, jnp.int32),
        active=jnp.ones((b,), bool) if active is None else jnp.asarray(active, bool),
        step=jnp.zeros((), jnp.int32),
        tokens=jnp.full((b, max_new_tokens), pad_id, jnp.int32),
        logprobs=jnp.zeros((b, max_new_tokens), jnp.float32),
        sampling_logprobs=jnp.zeros((b, max_new_tokens), jnp.float32),
        lengths=jnp.zeros((b,), jnp.int32),
        window=jnp.full((b, window), NO_TOKEN, jnp.int32),
        finish=jnp.full((b,), RUNNING, jnp.int32),
        rng=rng,
        row_ids=jnp.asarray(row_ids, jnp.int32),
        draw_offset=jnp.asarray(draw_offset, jnp.int32),
    )
