"""`SamplerPolicy`: the protocols' `Policy` (jaxseg.protocols.policy) on top of `Sampler`.

One KV-cache row per episode. `start` renders each conversation with the processor's chat
template (Qwen2.5-VL's), expands image placeholders with the HF processor and keeps the
prompts; the first `respond` prefills them — consecutive identical conversations (the G
episodes of one sample that `run_episodes` opens) share one prefill (`group_size=G`). Later
`respond`s append only what the conversation gained since the cached tokens (the end of the
last assistant turn + new user turns with their images + the generation prompt) with
`Sampler.continue_rollout`; finished episodes are skipped.

What gets appended is derived from the chat template itself: the text the template renders
for the whole conversation, minus the text it renders up to the last assistant message, plus
that message's closing `<|im_end|>\\n` when the model stopped on a stop string (or `\\n` when it
generated `<|im_end|>` itself). The cached tokens are the sampled ones, never a re-tokenization.

Returned text: the completion decoded with `skip_special_tokens=True` (protocol tags are
added non-special tokens, so they stay; a stop string is included). `state.turn_info[i]` gets,
per turn, the token ids fed before it (`segment_ids`: the prompt for the first turn), the
sampled `token_ids`, `logprobs` (raw model distribution at temperature 1 — the trainer's
teacher-forced log-probs), `sampling_logprobs`, `finish_reason` and `truncated`;
concatenating segment_ids + token_ids over the turns gives exactly the episode's tokens.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxseg.protocols.policy import (
    ChatPolicyBase,
    Message,
    PolicyState,
    message,
    message_images,
    text_part,
    without_meta,
)

from .batch import Prompt
from .filters import SamplingParams
from .sampler import Sampler
from .state import Rollout

DEFAULT_SAMPLING = SamplingParams()


@dataclasses.dataclass
class SamplerPolicyState(PolicyState):
    """PolicyState plus the sampler's view: the live rollout (one row per episode), the
    prompts waiting for the first respond, and how many messages each cache row covers."""

    rollout: Rollout | None = None
    prompts: list[Prompt] = dataclasses.field(default_factory=list)
    cached_messages: list[int] = dataclasses.field(default_factory=list)
    ended_with_eos: list[bool] = dataclasses.field(default_factory=list)


class SamplerPolicy(ChatPolicyBase):
    """A `Policy` backed by `sampler`; `processor` is the Qwen2.5-VL processor of the model's
    tokenizer (e.g. `jaxseg.data.tokenizer.build_processor`). The sampler's `eos_token_ids`
    should hold `<|im_end|>` (the end of an assistant turn)."""

    def __init__(
        self,
        sampler: Sampler,
        processor,
        *,
        max_new_tokens: int = 256,
        sampling: SamplingParams = DEFAULT_SAMPLING,
        seed: int = 0,
    ):
        self.sampler = sampler
        self.processor = processor
        self.tokenizer = processor.tokenizer
        if sampler.tokenizer is None:
            sampler.tokenizer = self.tokenizer  # stop strings are spelled with it
        self.max_new_tokens = max_new_tokens
        self.sampling = sampling
        self.seed = seed
        self._eos = set(sampler.eos_token_ids)

    @classmethod
    def for_model(
        cls,
        model,
        processor,
        *,
        sampling: SamplingParams = DEFAULT_SAMPLING,
        max_new_tokens: int = 256,
        seed: int = 0,
    ) -> SamplerPolicy:
        """The policy of `model` with its Qwen2.5-VL `processor`: stops at `<|im_end|>`, and
        never emits the tokens only the processor may place (image/video placeholders, vision
        start/end, pad) — an untrained policy otherwise samples them and breaks the next turn's
        vision merge."""
        from jaxseg.data.tokenizer import special_token_ids

        ids = special_token_ids(processor.tokenizer)
        keys = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")
        suppress = tuple(sorted({ids[k] for k in keys} | {ids["pad_token_id"]}))
        sampler = Sampler(
            model,
            eos_token_ids=[ids["eos_token_id"]],
            pad_token_id=ids["pad_token_id"],
            tokenizer=processor.tokenizer,
        )
        sampling = dataclasses.replace(sampling, suppress_tokens=suppress)
        return cls(sampler, processor, max_new_tokens=max_new_tokens, sampling=sampling, seed=seed)

    # ------------------------------------------------------------------ encoding
    def _render(self, messages: Sequence[Message], generation_prompt: bool) -> str:
        return self.processor.apply_chat_template(
            without_meta(messages), add_generation_prompt=generation_prompt, tokenize=False
        )

    def _encode(self, text: str, images: list[np.ndarray]) -> Prompt:
        out = self.processor(text=[text], images=images or None, return_tensors="np")
        ids = out["input_ids"][0].tolist()
        if not images:
            return Prompt(ids)
        return Prompt(ids, out["pixel_values"].astype(np.float32), out["image_grid_thw"])

    # ------------------------------------------------------------------ Policy
    def start(self, conversations: Sequence[Sequence[Message]]) -> SamplerPolicyState:
        base = PolicyState.open(conversations)
        state = SamplerPolicyState(base.conversations, base.active, base.turn_info)
        for conv in state.conversations:
            images = [im for m in conv for im in message_images(m)]
            state.prompts.append(self._encode(self._render(conv, True), images))
            state.cached_messages.append(len(conv))
        state.ended_with_eos = [False] * state.num_episodes
        return state

    def respond(self, state: PolicyState, stop: Sequence[str] = ()) -> list[str | None]:
        if not isinstance(state, SamplerPolicyState):
            raise TypeError("SamplerPolicy.respond needs the state its own start() returned")
        indices = state.active_indices()
        if not indices:
            return [None] * state.num_episodes
        if state.rollout is None:
            segments: list[Prompt | None] = list(state.prompts)
            group = _group_size(state.prompts)
            rollout = self.sampler.generate(
                state.prompts[::group],
                max_new_tokens=self.max_new_tokens,
                sampling=self.sampling,
                seed=self.seed,
                group_size=group,
                stop_strings=tuple(stop),
            )
        else:
            segments = [
                self._appended_segment(state, i) if state.active[i] else None
                for i in range(state.num_episodes)
            ]
            rollout = self.sampler.continue_rollout(
                state.rollout,
                segments,
                max_new_tokens=self.max_new_tokens,
                sampling=self.sampling,
                stop_strings=tuple(stop),
            )
        state.rollout = rollout
        out: list[str | None] = [None] * state.num_episodes
        for i in indices:
            n = int(rollout.lengths[i])
            ids = rollout.tokens[i, :n].tolist()
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            state.conversations[i].append(message("assistant", [text_part(text)]))
            state.cached_messages[i] = len(state.conversations[i])
            state.ended_with_eos[i] = bool(ids) and ids[-1] in self._eos
            state.turn_info[i].append(
                {
                    "segment_ids": list(segments[i].input_ids),
                    "token_ids": ids,
                    "logprobs": rollout.logprobs[i, :n].tolist(),
                    "sampling_logprobs": rollout.sampling_logprobs[i, :n].tolist(),
                    "finish_reason": str(rollout.finish_reason[i]),
                    "truncated": bool(rollout.truncated[i]),
                }
            )
            out[i] = text
        return out

    def _appended_segment(self, state: SamplerPolicyState, i: int) -> Prompt:
        conv = state.conversations[i]
        k = state.cached_messages[i]
        cached = self._render(conv[:k], False)  # ends with the assistant text + "<|im_end|>\n"
        full = self._render(conv, True)
        if not full.startswith(cached):
            raise ValueError(f"episode {i}: chat template is not prefix-stable; cannot append")
        closing = "<|im_end|>\n"
        if not cached.endswith(closing):
            raise ValueError(f"episode {i}: last cached message does not end with {closing!r}")
        head = "\n" if state.ended_with_eos[i] else closing
        images = [im for m in conv[k:] for im in message_images(m)]
        return self._encode(head + full[len(cached) :], images)


def _fingerprint(prompt: Prompt) -> tuple[Any, ...]:
    pv = prompt.pixel_values
    digest = hashlib.sha1(np.ascontiguousarray(pv).tobytes()).hexdigest() if pv is not None else ""
    return (tuple(prompt.input_ids), digest)


def _group_size(prompts: Sequence[Prompt]) -> int:
    """G when the prompts are B/G runs of G identical ones (run_episodes' layout), else 1."""
    keys = [_fingerprint(p) for p in prompts]
    run = 1
    while run < len(keys) and keys[run] == keys[0]:
        run += 1
    if len(keys) % run:
        return 1
    for start in range(0, len(keys), run):
        block = keys[start : start + run]
        if any(k != block[0] for k in block):
            return 1
    return run
