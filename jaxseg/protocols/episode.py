"""The generic multi-turn episode runner and the per-episode trace.

    traces = run_episodes(protocol, policy, samples, group_size=G, backend=backend)

For each sample the protocol builds the opening conversation once (frames chosen once, so
the G episodes of a GRPO group see the same prompt); every round the policy answers all
active episodes, each episode's environment parses its turn and returns the next
observation or ends; then all mask requests (final action and whatever the reward needs)
go to the mask backend in one batch; last, each episode scores itself with jaxseg.rewards.

A protocol module provides a `Protocol` subclass (opening, episode environment, oracle and
random turns, reward ceiling) and an `Episode` subclass (step, final action, mask jobs,
score).
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxseg.eval.metrics import region_iou
from jaxseg.protocols import annotations as ann
from jaxseg.protocols.policy import Message, Policy, message, message_text, text_part
from jaxseg.protocols.sample import EpisodeSample
from jaxseg.segmenter.interface import (
    MaskRequest,
    MaskResult,
    ObjectPrompt,
    VideoHandle,
    video_id_of,
)


# ----------------------------------------------------------------------------- records
@dataclasses.dataclass
class TurnRecord:
    """One assistant turn and the observation it answered.

    step: the protocol step ("answer", "select", "vdg", "kfg", "aks", "ktg", "round1",
    "round2"); frames_shown: absolute indices of the frames in that observation (all turns
    so far stay in context); keyframe_shown: the absolute index of the high-res keyframe in
    it, if any; action: the parsed action (JSON-able); reward: this turn's reward pieces."""

    index: int
    step: str
    observation: str
    frames_shown: list[int]
    keyframe_shown: int | None
    response: str
    parse_status: str
    action: dict[str, Any] = dataclasses.field(default_factory=dict)
    reward: dict[str, float] = dataclasses.field(default_factory=dict)
    policy_info: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class FinalAction:
    """What the mask backend gets: keyframe (absolute index and position) and per-object
    boxes [N, 4] / points [N, 2] (NaN rows where an object has no point) in native pixels.
    no_target: the policy abstained; fallback: the episode's final turn did not parse and
    the protocol's fallback stands in."""

    keyframe: int | None
    position: int | None
    boxes: np.ndarray
    points: np.ndarray | None = None
    no_target: bool = False
    fallback: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "keyframe": self.keyframe,
            "boxes": np.round(self.boxes, 2).tolist(),
            "points": None if self.points is None else np.round(self.points, 2).tolist(),
            "no_target": self.no_target,
            "fallback": self.fallback,
        }


@dataclasses.dataclass
class MaskJob:
    """One propagation: prompts on the frame at `position`, both directions. obj_ids index
    the boxes of the action the job was built from."""

    position: int
    prompts: tuple[ObjectPrompt, ...]

    @property
    def obj_ids(self) -> tuple[int, ...]:
        return tuple(p.obj_id for p in self.prompts)


def prompts_for(
    boxes: np.ndarray, points: np.ndarray | None, hw: tuple[int, int]
) -> tuple[ObjectPrompt, ...]:
    """Backend prompts for native-pixel boxes (+ optional points, NaN = none); boxes with no
    area inside the frame are skipped (a backend cannot take them), obj_id = box index."""
    out = []
    for i, box in enumerate(np.asarray(boxes, np.float64).reshape(-1, 4)):
        clipped = ann.clip_box(box, hw)
        if clipped is None:
            continue
        pts = labels = None
        if points is not None and np.isfinite(points[i]).all():
            pts = np.clip(points[i][None], 0, [hw[1] - 1, hw[0] - 1])
            labels = np.ones(1, np.int64)
        out.append(ObjectPrompt(i, tuple(float(v) for v in clipped), pts, labels))
    return tuple(out)


def union_of(result: MaskResult | None, shape: tuple[int, int, int], obj_ids=None) -> np.ndarray:
    """[T, H, W] union over the result's objects (or the subset obj_ids); empty if None."""
    if result is None:
        return np.zeros(shape, bool)
    keep = [j for j, o in enumerate(result.obj_ids) if obj_ids is None or o in set(obj_ids)]
    if not keep:
        return np.zeros(shape, bool)
    return result.object_masks[keep].any(axis=0)


@dataclasses.dataclass
class EpisodeTrace:
    """Everything one episode did and earned. reward["total"] is the trajectory reward."""

    protocol: str
    sample_key: str
    sample_index: int
    query: str
    turns: list[TurnRecord]
    final: FinalAction
    reward: dict[str, float]
    metrics: dict[str, float]
    pred_masks: np.ndarray | None = dataclasses.field(default=None, repr=False)
    """[T, H, W] bool: the episode's final masks over the video (not in to_json)."""

    @property
    def total(self) -> float:
        return float(self.reward["total"])

    def to_json(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "sample_key": self.sample_key,
            "sample_index": self.sample_index,
            "query": self.query,
            "turns": [dataclasses.asdict(t) for t in self.turns],
            "final": self.final.to_json(),
            "reward": dict(self.reward),
            "metrics": dict(self.metrics),
        }


# ----------------------------------------------------------------------------- base classes
@dataclasses.dataclass
class Opening:
    """The shared start of a sample's episodes: messages and what the environment chose."""

    messages: list[Message]
    shown: list[int]  # absolute frame ids in the first observation
    context: dict[str, Any] = dataclasses.field(default_factory=dict)


class Episode(abc.ABC):
    """The environment of one episode. `step` is called with each assistant turn."""

    def __init__(self, protocol: Protocol, sample: EpisodeSample, opening: Opening):
        self.protocol = protocol
        self.sample = sample
        self.opening = opening
        self.turns: list[TurnRecord] = []
        self._pending_obs: Message = opening.messages[-1]

    @property
    def cfg(self):
        return self.protocol.cfg

    def _record(self, text: str, step: str, status: str, action=None, reward=None, info=None):
        meta = self._pending_obs.get("meta") or {}
        self.turns.append(
            TurnRecord(
                index=len(self.turns),
                step=step,
                observation=message_text(self._pending_obs),
                frames_shown=list(meta.get("shown", [])),
                keyframe_shown=meta.get("keyframe"),
                response=text,
                parse_status=status,
                action=dict(action or {}),
                reward=dict(reward or {}),
                policy_info=dict(info or {}),
            )
        )

    def step(self, text: str, info: dict[str, Any] | None = None) -> Message | None:
        """Take one assistant turn; return the next observation, or None when the episode is
        over. info: the policy's data for this turn (tokens, log-probs), kept in the trace."""
        obs = self._step(text, info)
        if obs is not None:
            self._pending_obs = obs  # the observation the next turn answers
        return obs

    @abc.abstractmethod
    def _step(self, text: str, info: dict[str, Any] | None) -> Message | None:
        """Parse and record the turn (`_record`), advance the environment."""

    @abc.abstractmethod
    def final_action(self) -> FinalAction: ...

    def mask_jobs(self) -> dict[str, MaskJob]:
        """Named propagations the final masks and the reward need; "final" is the answer."""
        final = self.final_action()
        if final.no_target or final.position is None:
            return {}
        prompts = prompts_for(final.boxes, final.points, (self.sample.height, self.sample.width))
        return {"final": MaskJob(final.position, prompts)} if prompts else {}

    @abc.abstractmethod
    def score(self, masks: dict[str, MaskResult]) -> dict[str, float]:
        """Reward components and "total" from the mask results of `mask_jobs`."""

    def final_masks(self, masks: dict[str, MaskResult]) -> np.ndarray:
        """[T, H, W] the episode's predicted target masks (union over objects)."""
        return union_of(masks.get("final"), self.sample.target_masks.shape)


class Protocol(abc.ABC):
    """One seed's episode program. Subclasses set `name`, `stop_strings`, `max_turns`."""

    name: str = ""
    stop_strings: tuple[str, ...] = ("</answer>",)
    system_prompt: str = "You are a helpful assistant."

    def __init__(self, cfg):
        self.cfg = cfg

    @property
    @abc.abstractmethod
    def max_turns(self) -> int:
        """Upper bound on assistant turns per episode."""

    @abc.abstractmethod
    def opening(self, sample: EpisodeSample, rng: np.random.Generator) -> Opening: ...

    @abc.abstractmethod
    def episode(self, sample: EpisodeSample, opening: Opening) -> Episode: ...

    @abc.abstractmethod
    def oracle_turn(self, sample: EpisodeSample, conversation: Sequence[Message]) -> str:
        """The GT-derived answer to the latest observation (scripted.OraclePolicy)."""

    @abc.abstractmethod
    def random_turn(self, conversation: Sequence[Message], rng: np.random.Generator) -> str:
        """A random, possibly malformed, answer (scripted.RandomPolicy)."""

    @abc.abstractmethod
    def max_reward(self, sample: EpisodeSample) -> float:
        """The largest total an episode on `sample` can earn, from the terms' definitions."""

    def system_message(self) -> Message:
        return message("system", [text_part(self.system_prompt)])

    def ground_truth_inputs(self) -> list[str]:
        """Why this configuration would let annotations shape what the policy is shown (one
        reason each; empty = the observations depend only on frames, ids and the query).
        Training-only samplers (Veason-R1's keyframe-centred frames, RCoT-Seg's stage tasks)
        are fine in training and are refused at evaluation (`registry.make_eval_protocol`)."""
        return []


# ----------------------------------------------------------------------------- runner
def register_sample(backend, sample: EpisodeSample) -> VideoHandle:
    """Send the frames once. A ground-truth backend (oracle) gets the targets' masks under a
    per-sample video id: queries about one video have different targets."""
    if hasattr(backend, "add_ground_truth"):
        t, h, w = sample.frames.shape[:3]
        handle = VideoHandle(f"{video_id_of(sample.frames)}|{sample.key}", t, h, w)
        return backend.add_ground_truth(handle, dict(enumerate(sample.object_masks)))
    return backend.register_video(sample.frames)


def run_episodes(
    protocol: Protocol,
    policy: Policy,
    samples: Sequence[EpisodeSample],
    *,
    backend,
    group_size: int = 1,
    seed: int = 0,
    first_sample: int = 0,
) -> list[EpisodeTrace]:
    """Run G = group_size episodes per sample; traces come sample-major (sample 0's G
    episodes first), the layout jaxseg.rl's group advantages expect. `first_sample`: the
    index of `samples[0]` in a larger batch (one host's share opens its episodes as the
    whole batch would)."""
    episodes, owners = play_episodes(
        protocol, policy, samples, group_size=group_size, seed=seed, first_sample=first_sample
    )
    return score_episodes(protocol, episodes, owners, samples, backend)


def play_episodes(
    protocol: Protocol,
    policy: Policy,
    samples: Sequence[EpisodeSample],
    *,
    group_size: int = 1,
    seed: int = 0,
    first_sample: int = 0,
) -> tuple[list[Episode], list[int]]:
    """The turn loop alone: the finished episodes and the sample index of each (no masks,
    no reward; `run_episodes` and `predict_episodes` add those)."""
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    episodes: list[Episode] = []
    owners: list[int] = []
    for s_idx, sample in enumerate(samples):
        rng = np.random.default_rng([seed, first_sample + s_idx])
        opening = protocol.opening(sample, rng)
        for _ in range(group_size):
            episodes.append(protocol.episode(sample, opening))
            owners.append(s_idx)
    state = policy.start([ep.opening.messages for ep in episodes])
    for _ in range(protocol.max_turns):
        texts = policy.respond(state, stop=protocol.stop_strings)
        for i, text in enumerate(texts):
            if text is None:
                continue
            info = state.turn_info[i][-1] if state.turn_info[i] else {}
            obs = episodes[i].step(text, info)
            if obs is None:
                policy.finish(state, i)
            else:
                policy.append_user_turn(state, i, obs)
        if not any(state.active):
            break
    else:
        raise RuntimeError(
            f"{protocol.name}: episodes {state.active_indices()} still running after "
            f"max_turns={protocol.max_turns}; the environment must end them"
        )
    return episodes, owners


def predict_episodes(
    protocol: Protocol,
    policy: Policy,
    samples: Sequence[EpisodeSample],
    *,
    backend,
    seed: int = 0,
) -> list[EpisodeTrace]:
    """Inference (`jaxseg segment`): one episode per sample and its final masks, no reward.

    The samples may carry no ground truth (object_masks [0, T, H, W]); the environments only
    read GT in `score` and the oracle, so the turns are the same as in `run_episodes`. Only
    the "final" mask job is run (the others exist for rewards); traces have reward {} and
    metrics {"turns"} only."""
    episodes, owners = play_episodes(protocol, policy, samples, seed=seed)
    handles: dict[int, VideoHandle] = {}
    requests, where = [], []
    for e_idx, ep in enumerate(episodes):
        job = ep.mask_jobs().get("final")
        if job is not None:
            s_idx = owners[e_idx]
            if s_idx not in handles:
                handles[s_idx] = backend.register_video(samples[s_idx].frames)
            requests.append(MaskRequest(handles[s_idx], int(job.position), job.prompts, "both"))
            where.append(e_idx)
    results = dict(zip(where, backend.segment(requests) if requests else []))
    traces = []
    for e_idx, ep in enumerate(episodes):
        masks = {"final": results[e_idx]} if e_idx in results else {}
        traces.append(
            EpisodeTrace(
                protocol=protocol.name,
                sample_key=ep.sample.key,
                sample_index=owners[e_idx],
                query=ep.sample.query,
                turns=ep.turns,
                final=ep.final_action(),
                reward={},
                metrics={"turns": float(len(ep.turns))},
                pred_masks=ep.final_masks(masks),
            )
        )
    return traces


def score_episodes(protocol, episodes, owners, samples, backend) -> list[EpisodeTrace]:
    handles: dict[int, VideoHandle] = {}
    requests: list[MaskRequest] = []
    where: list[tuple[int, str]] = []
    for e_idx, ep in enumerate(episodes):
        for name, job in ep.mask_jobs().items():
            s_idx = owners[e_idx]
            if s_idx not in handles:
                handles[s_idx] = register_sample(backend, samples[s_idx])
            requests.append(MaskRequest(handles[s_idx], int(job.position), job.prompts, "both"))
            where.append((e_idx, name))
    results = backend.segment(requests) if requests else []
    per_episode: list[dict[str, MaskResult]] = [{} for _ in episodes]
    for (e_idx, name), res in zip(where, results):
        per_episode[e_idx][name] = res
    traces = []
    for e_idx, ep in enumerate(episodes):
        reward = ep.score(per_episode[e_idx])
        pred = ep.final_masks(per_episode[e_idx])
        j = region_iou(ep.sample.target_masks, pred)  # [T], both-empty frames count 1
        traces.append(
            EpisodeTrace(
                protocol=protocol.name,
                sample_key=ep.sample.key,
                sample_index=owners[e_idx],
                query=ep.sample.query,
                turns=ep.turns,
                final=ep.final_action(),
                reward=reward,
                metrics={"J": float(j.mean()), "turns": float(len(ep.turns))},
                pred_masks=pred,
            )
        )
    return traces
