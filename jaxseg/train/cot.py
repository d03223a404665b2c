"""Cold-start chain-of-thought traces: the oracle on the synthetic world, a teacher on real data.

Synthetic world (`oracle_episodes`): the protocol's scripted `OraclePolicy` plays each sample;
its reasoning states only scene-graph / GT facts (jaxseg.protocols.scripted). `Experiment.
sft_examples` encodes these episodes for SFT and `jaxseg data cot` writes them as JSONL, so
both come from this one function.

Real datasets (`teacher_episodes`), the seeds' construction pipeline (VideoSEG-O3 builds
VTS-CoT with large VLMs prompted with GT-annotated videos and filters the results,
VideoSEG-O3 arXiv 2606.06819 (training); RCoT-Seg/ReVSeg use teacher CoT the same way): a
teacher VLM plays the episodes while every image it is shown has the GT target outlined in
green and the user turns carry a hint saying so (`HintedPolicy`); a trace is kept only when
its answer matches the GT (`accept`). The hint parts are dropped from the written trace and
images are written as frame indices, so a student trained on it sees plain frames.

Record (one JSON line per episode, `trace_record`): sample key, query, protocol, the
conversation with images as {"type": "image", "frame": absolute_index}, the assistant turns,
the reward and J of the episode. `conversation_from_record` rebuilds the chat messages
(images from the benchmark's frames); `sft_examples_from_jsonl` turns a written file into the
SFT stage's examples (`sft.traces = <jsonl>`; "oracle" = the scripted oracle's traces).

The seeds' filters: `accept` (every turn parsed, no fallback, J >= min_j)
plus `reward_ok` (the answer verified by the episode's reward: at least `min_reward` of the
protocol's maximum); Veason-R1's stratified sampling (`stratified_positions`: round robin
over referring/reasoning x single/multi-target); VideoSEG-O3's three ranked candidate
intervals in the teacher's hint (`o3_candidates_hint`, jaxseg.protocols.o3.ranked_candidates)
and its verification turn (`o3_verified`: at least one executed select before the answer).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage
from tqdm.auto import tqdm

from jaxseg.protocols.annotations import resize_image
from jaxseg.protocols.episode import Protocol
from jaxseg.protocols.policy import Message, Policy, PolicyState, text_part
from jaxseg.protocols.sample import EpisodeSample
from jaxseg.protocols.scripted import OraclePolicy

from .rollouts import RecordedEpisode, run_recorded

HINT = (
    "(Annotation for the teacher: the target object(s) of the query are outlined in green in "
    "the images above; no green outline means the target is not in that frame. Reason from what "
    "the video shows and do not mention the outline.)"
)
HINT_COLOR = np.array([0, 255, 0], np.uint8)
_LABEL = re.compile(r"(\d+):\s*$")


def _chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


# ----------------------------------------------------------------------------- episodes
def oracle_episodes(
    protocol: Protocol,
    samples: Sequence[EpisodeSample],
    *,
    backend,
    seed: int = 0,
) -> list[RecordedEpisode]:
    """The scripted oracle's episode on each sample (cold-start traces of the synthetic world)."""
    return run_recorded(
        protocol, OraclePolicy(protocol, samples), samples, backend=backend, seed=seed
    )


def teacher_episodes(
    protocol: Protocol,
    teacher: Policy,
    samples: Sequence[EpisodeSample],
    *,
    backend,
    seed: int = 0,
    extra_hint: Callable[[EpisodeSample], str] | None = None,
) -> list[RecordedEpisode]:
    """The teacher's episode on each sample, shown GT-annotated frames (`HintedPolicy`).
    backend: scores the answer; use the oracle backend so `accept` tests the answer itself,
    not the mask propagator."""
    hinted = HintedPolicy(teacher, samples, extra_hint)
    return run_recorded(protocol, hinted, samples, backend=backend, seed=seed)


def accept(episode: RecordedEpisode, sample: EpisodeSample, *, min_j: float = 0.5) -> bool:
    """The answer matches the GT: every turn parsed, the final turn was not replaced by the
    protocol's fallback, and either the sample is null and the answer abstains, or the answer
    has a target and the episode's masks reach J >= min_j (with the oracle backend, J is high
    only when the answer's boxes pick out the GT targets)."""
    trace = episode.trace
    if not trace.turns or any(t.parse_status not in ("ok", "no_target") for t in trace.turns):
        return False
    if trace.final.fallback:
        return False
    if sample.is_null:
        return trace.final.no_target
    return not trace.final.no_target and trace.metrics["J"] >= min_j


def reward_ok(
    episode: RecordedEpisode, sample: EpisodeSample, protocol: Protocol, min_reward: float
) -> bool:
    """The answer verified by reward: total >= min_reward x the protocol's maximum."""
    return episode.trace.total >= min_reward * protocol.max_reward(sample) - 1e-9


def o3_verified(episode: RecordedEpisode) -> bool:
    """VTS-CoT's verification loop: at least one executed select before the final answer."""
    steps = [t.step for t in episode.trace.turns]
    return bool(steps) and steps[-1] == "answer" and steps.count("select") >= 1


def stratified_positions(source, count: int, seed: int = 0) -> list[int]:
    """Veason-R1's stratified sampling (arXiv 2508.11538 (training)): `count` positions of a
    `SampleSource`, round robin over the strata (referring / reasoning) x (single / multi
    target), shuffled within each; a stratum that runs out drops out. Null expressions form
    their own stratum."""
    strata: dict[tuple, list[int]] = {}
    for i in range(len(source)):
        r = source.record(i)
        n = len(r.target_ids)
        key = ("null",) if r.is_null else (int(r.type_id), "multi" if n > 1 else "single")
        strata.setdefault(key, []).append(i)
    rng = np.random.default_rng(seed)
    queues = [
        list(rng.permutation(v)) for _, v in sorted(strata.items(), key=lambda kv: str(kv[0]))
    ]
    out: list[int] = []
    while len(out) < count and any(queues):
        for q in queues:
            if q and len(out) < count:
                out.append(int(q.pop(0)))
    return out


class PositionSamples:
    """Samples of a source at given positions (lazy, indexable)."""

    def __init__(self, source, positions: Sequence[int]):
        self.source, self.positions = source, list(positions)

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int) -> EpisodeSample:
        return self.source[self.positions[i]]


def o3_candidates_hint(sample: EpisodeSample) -> str:
    """The teacher's extra hint for VideoSEG-O3 (VTS-CoT step 2-3): three ranked candidate
    intervals to verify in order with <select>, confirming the one with the target."""
    from jaxseg.protocols.o3 import interval_ids, ranked_candidates

    cands = ranked_candidates(sample)
    if not cands:
        return ""
    spans = "; ".join(
        f"{i + 1}. frames {a} to {b}"
        for i, (a, b) in enumerate(interval_ids(sample, s, e) for s, e in cands)
    )
    return (
        f"(Candidate segments in rank order: {spans}. Verify them in this order, one <select> "
        "per turn, and answer with the segment that holds the target.)"
    )


def iter_episodes(
    make: Callable[[list[EpisodeSample]], list[RecordedEpisode]],
    samples: Sequence[EpisodeSample],
    *,
    chunk: int = 16,
    progress: bool = False,
    desc: str = "cold-start traces",
) -> Iterator[tuple[EpisodeSample, RecordedEpisode]]:
    """Runs `make(part)` on consecutive chunks of `samples` (indexed lazily, so a dataset
    view is never loaded whole); yields (sample, episode)."""
    bar = tqdm(total=len(samples), desc=desc, disable=not progress)
    for start in range(0, len(samples), chunk):
        part = [samples[j] for j in range(start, min(start + chunk, len(samples)))]
        yield from zip(part, make(part))
        bar.update(len(part))
    bar.close()


class CycledSamples:
    """The first `count` samples of a source, wrapping around (lazy, indexable)."""

    def __init__(self, source, count: int):
        if len(source) == 0:
            raise ValueError("no samples to draw from")
        self.source, self.count = source, int(count)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> EpisodeSample:
        if not 0 <= i < self.count:
            raise IndexError(i)
        return self.source[i % len(self.source)]


# ----------------------------------------------------------------------------- hints
def outline_targets(image: np.ndarray, mask: np.ndarray, width: int = 1) -> np.ndarray:
    """image [S, S', 3] uint8 with the boundary of mask [H, W] (native size, resized to the
    image's) painted green."""
    h, w = image.shape[:2]
    if mask.shape != (h, w):
        from PIL import Image

        mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((w, h), 0)) > 0
    edge = mask & ~ndimage.binary_erosion(mask, iterations=width, border_value=0)
    out = image.copy()
    out[edge] = HINT_COLOR
    return out


def image_frame_ids(msg: Message) -> list[int]:
    """Absolute frame index of each image in a user turn. Every protocol writes an image right
    after a text part ending in its absolute index ("Frame 12: ", "Keyframe 12: "; the
    convention of jaxseg.protocols.observation), which is read back here."""
    ids, previous = [], None
    for part in msg.get("content", []):
        if part.get("type") == "image":
            match = _LABEL.search(previous.get("text", "")) if previous else None
            if match is None:
                raise ValueError(
                    f"user turn ({(msg.get('meta') or {}).get('step')}): image {len(ids)} does "
                    "not follow a 'Frame <index>: ' text part; cannot tell which frame it is"
                )
            ids.append(int(match.group(1)))
        previous = part
    return ids


def hinted_message(msg: Message, sample: EpisodeSample, extra: str = "") -> Message:
    """A user turn as the teacher sees it: GT outlines on its images + the HINT text part
    (+ `extra`, e.g. VideoSEG-O3's ranked candidate intervals)."""
    if msg.get("role") != "user" or isinstance(msg.get("content"), str):
        return msg
    ids = iter(image_frame_ids(msg))
    parts = []
    for part in msg["content"]:
        if part.get("type") == "image":
            position = sample.position_of(next(ids))
            part = dict(part, image=outline_targets(part["image"], sample.target_masks[position]))
        parts.append(part)
    parts.append(dict(text_part(HINT + (" " + extra if extra else "")), hint=True))
    return dict(msg, content=parts)


class HintedPolicy:
    """Wraps a policy: every user turn it receives is replaced by its `hinted_message`."""

    def __init__(
        self,
        inner: Policy,
        samples: Sequence[EpisodeSample],
        extra_hint: Callable[[EpisodeSample], str] | None = None,
    ):
        self.inner = inner
        self.samples = {s.key: s for s in samples}
        self.extra_hint = extra_hint

    def _hint(self, msg: Message) -> Message:
        key = (msg.get("meta") or {}).get("sample_key")
        if key not in self.samples:
            return msg
        sample = self.samples[key]
        extra = self.extra_hint(sample) if self.extra_hint is not None else ""
        return hinted_message(msg, sample, extra)

    def start(self, conversations):
        return self.inner.start([[self._hint(m) for m in conv] for conv in conversations])

    def respond(self, state: PolicyState, stop=()):
        return self.inner.respond(state, stop)

    def append_user_turn(self, state: PolicyState, episode_idx: int, msg: Message):
        return self.inner.append_user_turn(state, episode_idx, self._hint(msg))

    def finish(self, state: PolicyState, episode_idx: int):
        return self.inner.finish(state, episode_idx)


# ----------------------------------------------------------------------------- records
def _clean_content(msg: Message) -> list[dict[str, Any]] | str:
    content = msg.get("content", "")
    if isinstance(content, str):
        return content
    ids = iter(image_frame_ids(msg)) if msg.get("role") == "user" else iter(())
    out = []
    for part in content:
        if part.get("hint"):
            continue
        if part.get("type") == "image":
            size = list(np.shape(part["image"])[:2])
            out.append({"type": "image", "frame": next(ids), "size": size})
        else:
            out.append({"type": "text", "text": part.get("text", "")})
    return out


def trace_record(episode: RecordedEpisode) -> dict[str, Any]:
    """One JSON-able line: the conversation (images -> frame indices, hints dropped)."""
    t = episode.trace
    messages = [{"role": m["role"], "content": _clean_content(m)} for m in episode.conversation]
    return {
        "sample_key": t.sample_key,
        "query": t.query,
        "protocol": t.protocol,
        "messages": messages,
        "assistant": [turn.response for turn in t.turns],
        "reward": dict(t.reward),
        "J": float(t.metrics["J"]),
    }


def write_jsonl(records: Iterable[dict], path: str | Path) -> int:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
            n += 1
    return n


def teacher_policy(model, processor, *, temperature: float, max_new_tokens: int, seed: int):
    """A sampler-backed policy for a loaded teacher (the same construction as `Experiment`)."""
    from jaxseg.sampling.filters import SamplingParams
    from jaxseg.sampling.policy import SamplerPolicy

    return SamplerPolicy.for_model(
        model,
        processor,
        sampling=SamplingParams(temperature=temperature),
        max_new_tokens=max_new_tokens,
        seed=seed,
    )


def conversation_from_record(record: dict[str, Any], sample: EpisodeSample) -> list[Message]:
    """Inverse of `trace_record` for training: the chat messages with each image rebuilt from
    the sample's frame (resized as the protocols show it), ready for `ChatEncoder.encode`."""
    if record["sample_key"] != sample.key:
        raise ValueError(f"trace of {record['sample_key']!r} given sample {sample.key!r}")
    messages = []
    for m in record["messages"]:
        content = m["content"]
        if not isinstance(content, str):
            content = [_rebuilt_part(p, sample) for p in content]
        messages.append({"role": m["role"], "content": content})
    return messages


def _rebuilt_part(part: dict[str, Any], sample: EpisodeSample) -> dict[str, Any]:
    if part["type"] != "image":
        return text_part(part["text"])
    position = sample.position_of(part["frame"])
    h, w = part["size"]
    if position is None or h != w:
        raise ValueError(
            f"{sample.key}: image of frame {part['frame']} size {part['size']}: no such frame, "
            "or not square (the protocols show square images)"
        )
    return {"type": "image", "image": resize_image(sample.frames[position], h)}


# ----------------------------------------------------------------------------- SFT from JSONL
def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such trace file (sft.traces)")
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{n}: not JSON ({err})") from None
    if not out:
        raise ValueError(f"{path}: no traces")
    return out


def jsonl_conversations(
    path: str | Path, source, count: int | None = None, protocol: str | None = None
) -> list[tuple[EpisodeSample, list[Message]]]:
    """(sample, chat messages) of the first `count` traces of a `trace_record` JSONL (cycling
    when it holds fewer), each sample looked up by key in `source` (a `SampleSource`);
    `protocol`: refuse traces written for another protocol."""
    records = read_jsonl(path)
    if protocol is not None:
        other = {r.get("protocol") for r in records} - {protocol}
        if other:
            raise ValueError(f"{path}: traces of protocol(s) {sorted(other)}, not {protocol!r}")
    where = {source.record(i).key: i for i in range(len(source))}
    n = len(records) if count is None else int(count)
    out = []
    for j in range(n):
        r = records[j % len(records)]
        if r["sample_key"] not in where:
            raise KeyError(f"{path}: trace of {r['sample_key']!r}, not in {source.root}")
        sample = source[where[r["sample_key"]]]
        out.append((sample, conversation_from_record(r, sample)))
    return out


def sft_examples_from_jsonl(
    path: str | Path, source, encoder, count: int | None = None, protocol: str | None = None
) -> list[dict[str, np.ndarray]]:
    """The SFT stage's examples from a written trace file (loss on the assistant turns)."""
    from jaxseg.protocols.policy import without_meta

    from .rollouts import stored_example

    return [
        stored_example(encoder.encode(without_meta(conv)).as_example())
        for _, conv in jsonl_conversations(path, source, count, protocol)
    ]
