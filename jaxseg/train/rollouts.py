"""Episodes -> training examples (SFT from scripted traces, GRPO from sampled rollouts).

`run_recorded` runs `jaxseg.protocols.run_episodes` and also returns each episode's final
conversation (every turn, every image) and per-turn policy info. From those:

- SFT: the conversation is encoded with `ChatEncoder` (assistant turns carry the loss);
- GRPO: the sampler's own token stream is used as it is (turn_info `segment_ids` +
  `token_ids`, with the sampler's log-probs on the sampled tokens); images come from the
  conversation through the same image processor the sampler used. Nothing is re-tokenized
  from text, so trainer and sampler score the same sequence.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxseg.data.chat import ChatEncoder
from jaxseg.protocols.episode import EpisodeTrace, Protocol, run_episodes
from jaxseg.protocols.policy import Message, Policy, PolicyState, message_images, without_meta

from .overlap import run_overlapped


class RecordingPolicy:
    """Wraps a policy and keeps the state of its last batch (conversations, turn_info)."""

    def __init__(self, inner: Policy):
        self.inner = inner
        self.state: PolicyState | None = None
        self.states: list[PolicyState] = []  # every batch started, in order

    def start(self, conversations):
        self.state = self.inner.start(conversations)
        self.states.append(self.state)
        return self.state

    def respond(self, state, stop=()):
        return self.inner.respond(state, stop)

    def append_user_turn(self, state, episode_idx, msg):
        return self.inner.append_user_turn(state, episode_idx, msg)

    def finish(self, state, episode_idx):
        return self.inner.finish(state, episode_idx)


@dataclasses.dataclass
class RecordedEpisode:
    trace: EpisodeTrace
    conversation: list[Message]
    turn_info: list[dict[str, Any]]


def run_recorded(
    protocol: Protocol,
    policy: Policy,
    samples,
    *,
    backend,
    group_size: int = 1,
    seed: int = 0,
    first_sample: int = 0,
    overlap_chunks: int = 1,
) -> list[RecordedEpisode]:
    """`run_episodes` plus each episode's conversation and turn info (sample-major order).

    `overlap_chunks > 1`: the prompts are played in that many parts and each part's masks and
    rewards are computed while the next part samples (`jaxseg.train.overlap`; same episodes)."""
    recorder = RecordingPolicy(policy)
    run = (
        run_episodes
        if overlap_chunks == 1
        else functools.partial(run_overlapped, chunks=overlap_chunks)
    )
    traces = run(
        protocol,
        recorder,
        samples,
        backend=backend,
        group_size=group_size,
        seed=seed,
        first_sample=first_sample,
    )
    conversations = [c for st in recorder.states for c in st.conversations]
    turn_info = [i for st in recorder.states for i in st.turn_info]
    assert len(conversations) == len(traces)
    return [RecordedEpisode(t, c, i) for t, c, i in zip(traces, conversations, turn_info)]


def stored_example(example: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The form a supervised stage keeps its examples in: pixel rows in float16 (a stage
    holds thousands of examples: 1600 eight-frame traces are 3.8 GB in float32). Normalised
    values of 8-bit frames lose < 1e-3, far below one 8-bit step (~0.015);
    make_policy_batch casts back to float32."""
    if "pixel_values" in example:
        example = {**example, "pixel_values": np.asarray(example["pixel_values"], np.float16)}
    return example


def sft_example(episode: RecordedEpisode, encoder: ChatEncoder) -> dict[str, np.ndarray]:
    """The whole conversation with the loss on the assistant turns (`stored_example` form)."""
    return stored_example(encoder.encode(without_meta(episode.conversation)).as_example())


def rollout_example(
    episode: RecordedEpisode, image_processor, *, advantage: float
) -> dict[str, Any]:
    """The sampler's token stream of one episode as a GRPO example.

    policy_mask is 1 on sampled tokens; old_logp holds the sampler's log-prob of each sampled
    token (raw model distribution, temperature 1 — jaxseg.sampling.state.Rollout)."""
    if not episode.turn_info or "token_ids" not in episode.turn_info[0]:
        raise ValueError(
            f"{episode.trace.sample_key}: no sampled tokens in turn_info; GRPO examples need "
            "a sampler-backed policy (jaxseg.sampling.policy.SamplerPolicy)"
        )
    ids: list[int] = []
    mask: list[float] = []
    logp: list[float] = []
    for info in episode.turn_info:
        seg, tok = list(info["segment_ids"]), list(info["token_ids"])
        ids += seg + tok
        mask += [0.0] * len(seg) + [1.0] * len(tok)
        logp += [0.0] * len(seg) + [float(x) for x in info["logprobs"]]
    example: dict[str, Any] = {
        "input_ids": np.asarray(ids, np.int64),
        "policy_mask": np.asarray(mask, np.float32),
        "old_logp": np.asarray(logp, np.float32),
        "advantage": float(advantage),
    }
    images = [im for m in episode.conversation for im in message_images(m)]
    if images:
        out = image_processor(images=images, return_tensors="np")
        example["pixel_values"] = np.asarray(out["pixel_values"], np.float32)
        example["image_grid_thw"] = np.asarray(out["image_grid_thw"], np.int64)
    return example


def reward_summary(episodes: Sequence[RecordedEpisode]) -> dict[str, float]:
    """Means of the reward components, J and turn counts over a batch of episodes."""
    out: dict[str, float] = {}
    keys = sorted({k for e in episodes for k in e.trace.reward})
    for k in keys:
        vals = [e.trace.reward[k] for e in episodes if k in e.trace.reward]
        out[f"reward/{k}"] = float(np.mean(vals))
    out["reward/std"] = float(np.std([e.trace.total for e in episodes]))
    for k in ("J", "turns"):
        out[k] = float(np.mean([e.trace.metrics[k] for e in episodes]))
    parsed = [t.parse_status in ("ok", "no_target") for e in episodes for t in e.trace.turns]
    out["parse_ok"] = float(np.mean(parsed)) if parsed else 0.0
    return out
