"""`Sampler`: batched, jitted rollouts of a Qwen2.5-VL policy with a preallocated KV cache.

    sampler = Sampler(model, eos_token_ids=[im_end], pad_token_id=pad,
                      tokenizer=tok, stop_strings=["</answer>"])
    out = sampler.generate(prompts, max_new_tokens=64, sampling=SamplingParams(1.0, top_p=0.95),
                           seed=0, group_size=8)          # one prefill, 8 samples per prompt
    more = sampler.continue_rollout(out, [Prompt(next_turn_ids, pixel_values=..., ...)] * 16)

* Prompts are left-padded to a bucketed length and media to a bucketed patch count
  (`batch.py`), the cache length is bucketed too, so new lengths reuse compiled code.
* Prefill = vision tower + prompt once per prompt. With `group_size > 1` the prompt's keys and
  values are also *held* once per group (`loop.share_prompt`): the G rows of a prompt attend to
  its shared prefix and to their own slots in two parts combined by log-sum-exp
  (`kv_cache.grouped_attention`), so a G-sample rollout of a long video prompt holds one copy
  of its KV, not G, and each decode step reads it once per group.
* The decode loop is one `lax.while_loop` (`loop.decode_loop`); the cache is donated.
* Log-probs: `Rollout.logprobs` are under the raw model distribution (temperature 1, full
  vocabulary), i.e. what the trainer's teacher-forced `token_logprobs` gives with its default
  temperature; `Rollout.sampling_logprobs` are under the distribution actually sampled from.
* Stop strings: token-level matching in the loop plus a host check of the decoded text
  (stop.py). EOS ids stop a row too; a row that never stops is flagged `truncated`.
* Multi-turn: `continue_rollout` appends a new turn (text + new images / videos) to each row's
  cache after its completion and decodes on; the appended tokens get the M-RoPE positions a
  full forward over the whole conversation gives them.
* Sharding: with `mesh=`, prompts and cache are placed batch-sharded over ('data', 'fsdp') and
  the cache's kv heads over 'tensor' (jaxseg.parallel.rules); put the model on the same mesh
  with `jaxseg.parallel.place`.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from jaxseg.models.inputs import Prompt, bucket
from jaxseg.models.kv_cache import KVCache
from jaxseg.parallel.rules import kv_cache_shardings, named_sharding

from .batch import History, SegmentBatch, assemble_segment
from .filters import SamplingParams
from .loop import decode_loop, grow_cache, invalidate_slots, prefill, share_prompt, start_turn
from .state import EOS, FINISH_NAMES, LENGTH, SKIPPED, STOP_STRING, Rollout
from .stop import StopTable, build_stop_table, first_stop_in_text

DEFAULT_SAMPLING = SamplingParams()  # temperature 1, no truncation


class Sampler:
    """Rollouts of `model` (read at every call, so trainer updates are picked up without
    recompiling). See the module docstring."""

    def __init__(
        self,
        model: nnx.Module,
        *,
        eos_token_ids: Sequence[int] = (),
        pad_token_id: int = 0,
        tokenizer=None,
        stop_strings: Sequence[str] = (),
        length_buckets: Sequence[int] | None = None,
        cache_buckets: Sequence[int] | None = None,
        patch_buckets: Sequence[int] | None = None,
        mesh: Mesh | None = None,
    ):
        self.model = model
        self.config = model.config
        self.pad_token_id = int(pad_token_id)
        self.tokenizer = tokenizer
        self.eos_token_ids = tuple(int(e) for e in eos_token_ids)
        self.stop_strings = tuple(stop_strings)
        self._stop_tables: dict[tuple[str, ...], StopTable] = {}
        self.stop_table = self._stop_table(self.stop_strings)
        self.length_buckets = length_buckets
        self.cache_buckets = cache_buckets
        self.patch_buckets = patch_buckets
        self.mesh = mesh
        self.prefill_rows = 0  # rows run through prefill so far (shared-prefill accounting)
        # stream id of row 0: a host sampling rows [first_row, ...) of a larger batch draws
        # the tokens the whole batch would draw for them (jaxseg.parallel.hosts)
        self.first_row = 0

    def _stop_table(self, stop_strings: tuple[str, ...]) -> StopTable:
        if stop_strings not in self._stop_tables:
            self._stop_tables[stop_strings] = build_stop_table(
                self.eos_token_ids, stop_strings, self.tokenizer
            )
        return self._stop_tables[stop_strings]

    # ------------------------------------------------------------------ placement
    def _put(self, x, logical: tuple[str | None, ...]):
        """`x` on the mesh with `logical` axes (jaxseg.parallel.rules; a dimension the mesh axes
        do not divide, e.g. one prompt before it is tiled to G rows, is replicated)."""
        if self.mesh is None or x is None:
            return x if x is None else jnp.asarray(x)
        return jax.device_put(x, named_sharding(np.shape(x), logical, self.mesh))

    def _place_cache(self, cache: KVCache) -> KVCache:
        return jax.device_put(cache, kv_cache_shardings(cache, self.mesh))

    def _place_batch(self, batch: SegmentBatch) -> SegmentBatch:
        return batch.replace(
            input_ids=self._put(batch.input_ids, ("batch",)),
            attention_mask=self._put(batch.attention_mask, ("batch",)),
            position_ids=self._put(batch.position_ids, (None, "batch")),
            pixel_values=self._put(batch.pixel_values, ()),
            pixel_values_videos=self._put(batch.pixel_values_videos, ()),
        )

    def _new_cache(self, batch: int, length: int) -> KVCache:
        cache = self.model.init_cache(batch, length)
        return cache if self.mesh is None else self._place_cache(cache)

    # ------------------------------------------------------------------ public API
    def generate(
        self,
        prompts: Sequence[Prompt],
        *,
        max_new_tokens: int,
        sampling: SamplingParams = DEFAULT_SAMPLING,
        seed: int = 0,
        group_size: int = 1,
        cache_length: int | None = None,
        stop_strings: Sequence[str] | None = None,
    ) -> Rollout:
        """`group_size` samples for each prompt; rows p*G .. p*G+G-1 belong to prompt p.

        `cache_length`: slots to preallocate per row (default: bucket of prompt bucket +
        max_new_tokens); too small for the longest prompt + max_new_tokens is an error (never a
        clipped write). With `group_size > 1` the prompt's slots are held once per group and
        each row owns the remaining `cache_length - prompt bucket` slots (default: the bucket of
        max_new_tokens).
        `stop_strings`: this call's stop strings (default: the sampler's)."""
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {group_size}")
        strings = self.stop_strings if stop_strings is None else tuple(stop_strings)
        stops = self._stop_table(strings)
        if any(p is None for p in prompts):
            raise ValueError(f"row {[p is None for p in prompts].index(True)}: prompt is None")
        histories = [History() for _ in prompts]
        batch, next_pos, histories = assemble_segment(
            histories,
            list(prompts),
            self.config,
            length_buckets=self.length_buckets,
            patch_buckets=self.patch_buckets,
        )
        prompt_len = batch.input_ids.shape[1]
        needed = prompt_len + max_new_tokens
        explicit_length = cache_length
        if cache_length is None:
            cache_length = bucket(needed, self.cache_buckets)
        elif cache_length < needed:
            longest = max(len(p.input_ids) for p in prompts)
            raise ValueError(
                f"cache_length={cache_length} is too small: longest prompt has {longest} tokens "
                f"(bucket {prompt_len}) + max_new_tokens={max_new_tokens} = {needed} slots"
            )
        graphdef, weights = nnx.split(self.model)
        share = group_size > 1
        cache = self._new_cache(len(prompts), prompt_len if share else cache_length)
        logits, cache = prefill(graphdef, weights, self._place_batch(batch), cache)
        self.prefill_rows += len(prompts)
        next_pos = jnp.asarray(next_pos)
        if share:
            own = (
                bucket(max_new_tokens, self.cache_buckets)
                if explicit_length is None
                else explicit_length - prompt_len
            )
            cache, logits, next_pos = share_prompt(cache, logits, next_pos, group_size, own)
            if self.mesh is not None:  # G * B rows: shard them over the batch axes again
                cache = self._place_cache(cache)
                logits = self._put(logits, ("batch",))
                next_pos = self._put(next_pos, ("batch",))
            histories = [h.copy() for h in histories for _ in range(group_size)]
        rows = len(prompts) * group_size
        state = start_turn(
            cache,
            logits,
            next_pos,
            row_ids=jnp.arange(self.first_row, self.first_row + rows),
            rng=jax.random.key(seed),
            draw_offset=0,
            max_new_tokens=max_new_tokens,
            window=stops.window,
            pad_id=self.pad_token_id,
        )
        prompt_index = np.repeat(np.arange(len(prompts)), group_size)
        return self._decode(graphdef, weights, state, histories, prompt_index, sampling, strings)

    def continue_rollout(
        self,
        rollout: Rollout,
        segments: Sequence[Prompt],
        *,
        max_new_tokens: int,
        sampling: SamplingParams = DEFAULT_SAMPLING,
        stop_strings: Sequence[str] | None = None,
    ) -> Rollout:
        """Appends `segments[b]` (e.g. the end of the assistant turn + a new user turn with new
        frames) after row b's completion, in the same cache, and decodes a new turn.
        `segments[b] = None` leaves row b as it is (no tokens appended, nothing generated,
        finish_reason 'skipped'), e.g. for finished episodes.

        `rollout` gives up its cache (donated): continue from the returned rollout next."""
        if all(seg is None for seg in segments):
            raise ValueError("every segment is None: no row to continue")
        if rollout.state is None:
            raise ValueError("this rollout was already continued (its cache was consumed)")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        strings = self.stop_strings if stop_strings is None else tuple(stop_strings)
        stops = self._stop_table(strings)
        batch, next_pos, histories = assemble_segment(  # validates before the cache is consumed
            rollout.histories,
            list(segments),
            self.config,
            length_buckets=self.length_buckets,
            patch_buckets=self.patch_buckets,
        )
        prev = rollout.state
        rollout.state = None
        cache = prev.cache
        needed = int(cache.index) + batch.input_ids.shape[1] + max_new_tokens
        if needed > cache.max_length:
            cache = grow_cache(cache, bucket(needed, self.cache_buckets))
        graphdef, weights = nnx.split(self.model)
        logits, cache = prefill(graphdef, weights, self._place_batch(batch), cache)
        self.prefill_rows += sum(seg is not None for seg in segments)
        state = start_turn(
            cache,
            logits,
            jnp.asarray(next_pos),
            row_ids=prev.row_ids,
            rng=prev.rng,
            draw_offset=int(prev.draw_offset) + int(prev.step),
            max_new_tokens=max_new_tokens,
            window=stops.window,
            pad_id=self.pad_token_id,
            active=np.asarray([seg is not None for seg in segments]),
        )
        return self._decode(
            graphdef, weights, state, histories, rollout.prompt_index, sampling, strings
        )

    # ------------------------------------------------------------------ internals
    def _decode(
        self, graphdef, weights, state, histories, prompt_index, sampling, stop_strings
    ) -> Rollout:
        turn_start = int(state.cache.index)  # read before the state is donated
        skipped = ~np.asarray(state.active)
        pad = jnp.asarray(self.pad_token_id, jnp.int32)
        stops = self._stop_table(stop_strings)
        state = decode_loop(graphdef, weights, state, stops, pad, sampling)
        tokens = _to_host(state.tokens)
        logprobs = _to_host(state.logprobs)
        sampling_lp = _to_host(state.sampling_logprobs)
        lengths = _to_host(state.lengths)
        finish = _to_host(state.finish)
        finish[skipped] = SKIPPED
        if stop_strings:
            cut = self._host_stop_check(tokens, lengths, finish, stop_strings)
            if cut is not None:
                keep, changed = cut
                tokens[changed[:, None] & (np.arange(tokens.shape[1]) >= keep[:, None])] = (
                    self.pad_token_id
                )
                for arr in (logprobs, sampling_lp):
                    arr[np.arange(arr.shape[1])[None, :] >= keep[:, None]] = 0.0
                state = state.replace(
                    cache=invalidate_slots(state.cache, jnp.int32(turn_start), jnp.asarray(keep))
                )
                lengths = keep
        for b, hist in enumerate(histories):
            hist.ids.extend(tokens[b, : lengths[b]].tolist())
        return Rollout(
            tokens=tokens,
            logprobs=logprobs,
            sampling_logprobs=sampling_lp,
            lengths=lengths,
            finish_reason=np.array([FINISH_NAMES[int(f)] for f in finish]),
            truncated=finish == LENGTH,
            prompt_index=np.asarray(prompt_index),
            histories=histories,
            state=state,
        )

    def _host_stop_check(self, tokens, lengths, finish, stop_strings):
        """Finds stop strings the token table missed (other spellings); updates `finish` in
        place and returns (new lengths, changed rows) or None when nothing changed."""
        keep = lengths.copy()
        changed = np.zeros(len(lengths), bool)
        for b in range(len(lengths)):
            n = first_stop_in_text(tokens[b, : lengths[b]], stop_strings, self.tokenizer.decode)
            if n is None:
                continue
            if n < lengths[b] or finish[b] not in (EOS, STOP_STRING):
                keep[b], changed[b], finish[b] = n, True, STOP_STRING
        return (keep, changed) if changed.any() else None


def _to_host(x: jax.Array) -> np.ndarray:
    """The whole array on this host, also when its rows live on other processes' devices
    (a multi-host mesh shards rollout rows over the data axis)."""
    if getattr(x, "is_fully_addressable", True):
        return np.array(x)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
