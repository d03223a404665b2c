"""The `Policy` interface: a batched multi-turn chat policy over HF-style messages.

A protocol (veason, rcot, o3, revseg) runs B episodes at once (G per sample for GRPO). It
opens every conversation with `start`, asks for one assistant turn per still-active episode
with `respond`, and either appends the environment's next observation with
`append_user_turn` or ends the episode with `finish`. A sampler-backed policy keeps one KV
cache per episode and only encodes the appended turn (jaxseg.sampling); scripted policies
(jaxseg.protocols.scripted) answer from annotations.

Messages are transformers chat messages:

    {"role": "system" | "user" | "assistant",
     "content": [{"type": "image", "image": np.uint8 [H, W, 3]}, {"type": "text", "text": str}],
     "meta": {...}}                                       # optional, user turns only

`meta` is environment bookkeeping (protocol step, absolute frame indices shown, image sizes,
sample key). Qwen's chat template never reads it and a model policy must ignore it; the
scripted oracle reads it to know which step it is answering (it sees the same frames the
model sees, plus the ground truth).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

Message = dict[str, Any]
Conversation = list[Message]


def text_part(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def image_part(image: np.ndarray) -> dict[str, Any]:
    """An RGB uint8 [H, W, 3] image."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image content must be uint8 [H, W, 3], got {image.dtype} {image.shape}")
    return {"type": "image", "image": image}


def message(role: str, parts: Sequence[dict[str, Any]], meta: dict | None = None) -> Message:
    if role not in ("system", "user", "assistant"):
        raise ValueError(f"message role must be system/user/assistant, got {role!r}")
    msg: Message = {"role": role, "content": list(parts)}
    if meta is not None:
        msg["meta"] = dict(meta)
    return msg


def without_meta(messages: Sequence[Message]) -> list[Message]:
    """The messages as the chat template sees them: `meta` is bookkeeping, never model input."""
    return [{k: v for k, v in m.items() if k != "meta"} for m in messages]


def message_text(msg: Message) -> str:
    """The concatenated text parts of a message (images dropped)."""
    content = msg.get("content", "")
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if p.get("type") == "text")


def message_images(msg: Message) -> list[np.ndarray]:
    content = msg.get("content", "")
    if isinstance(content, str):
        return []
    return [p["image"] for p in content if p.get("type") == "image"]


def last_user_meta(conversation: Sequence[Message]) -> dict[str, Any]:
    """`meta` of the latest user turn ({} if none carries one)."""
    for msg in reversed(conversation):
        if msg.get("role") == "user":
            return dict(msg.get("meta") or {})
    return {}


@dataclasses.dataclass
class PolicyState:
    """Per-batch state. conversations[i] grows with every turn; active[i] goes False at
    `finish`. turn_info[i] holds one dict per assistant turn of episode i for whatever the
    policy wants the trainer to see (a sampler puts token ids, log-probs and truncation flags
    there); the episode trace copies it."""

    conversations: list[Conversation]
    active: list[bool]
    turn_info: list[list[dict[str, Any]]]

    @classmethod
    def open(cls, conversations: Sequence[Sequence[Message]]) -> PolicyState:
        convs = [list(c) for c in conversations]
        for i, conv in enumerate(convs):
            if not conv:
                raise ValueError(f"conversation {i} is empty: it needs at least a user turn")
        return cls(convs, [True] * len(convs), [[] for _ in convs])

    @property
    def num_episodes(self) -> int:
        return len(self.conversations)

    def active_indices(self) -> list[int]:
        return [i for i, a in enumerate(self.active) if a]

    def check_active(self, episode_idx: int) -> None:
        if not 0 <= episode_idx < self.num_episodes:
            raise IndexError(f"episode {episode_idx} is not in [0, {self.num_episodes})")
        if not self.active[episode_idx]:
            raise ValueError(f"episode {episode_idx} is finished")


@runtime_checkable
class Policy(Protocol):
    """A batched multi-turn chat policy.

    start(conversations)               -> state (encodes the prompts; one KV cache each)
    respond(state, stop=...)           -> [B] list: the new assistant text of every active
                                          episode, None for finished ones; the text is also
                                          appended to state.conversations[i] as an
                                          assistant message
    append_user_turn(state, i, msg)    -> None (continue episode i with an observation)
    finish(state, i)                   -> None (episode i is over; its cache may be freed)

    `stop` lists strings at which generation of a turn stops (included in the returned text),
    e.g. ("</answer>", "</select>"); generation also stops at the end-of-turn token.
    `respond` must also append one dict per generated turn to state.turn_info[i] (empty if
    it has nothing to add); the runner files state.turn_info[i][-1] with that turn's record.
    """

    def start(self, conversations: Sequence[Sequence[Message]]) -> PolicyState: ...

    def respond(self, state: PolicyState, stop: Sequence[str] = ()) -> list[str | None]: ...

    def append_user_turn(self, state: PolicyState, episode_idx: int, msg: Message) -> None: ...

    def finish(self, state: PolicyState, episode_idx: int) -> None: ...


class ChatPolicyBase:
    """Book-keeping shared by simple policies: subclasses implement `_generate` for the
    active episodes and inherit state handling."""

    def start(self, conversations: Sequence[Sequence[Message]]) -> PolicyState:
        return PolicyState.open(conversations)

    def _generate(
        self, state: PolicyState, indices: Sequence[int], stop: Sequence[str]
    ) -> list[str]:
        raise NotImplementedError

    def respond(self, state: PolicyState, stop: Sequence[str] = ()) -> list[str | None]:
        indices = state.active_indices()
        texts = self._generate(state, indices, stop) if indices else []
        if len(texts) != len(indices):
            raise RuntimeError(f"{type(self).__name__} gave {len(texts)} turns for {len(indices)}")
        out: list[str | None] = [None] * state.num_episodes
        for i, text in zip(indices, texts):
            text = truncate_at_stop(text, stop)
            state.conversations[i].append(message("assistant", [text_part(text)]))
            state.turn_info[i].append({})
            out[i] = text
        return out

    def append_user_turn(self, state: PolicyState, episode_idx: int, msg: Message) -> None:
        state.check_active(episode_idx)
        if msg.get("role") != "user":
            raise ValueError(f"append_user_turn needs a user message, got {msg.get('role')!r}")
        state.conversations[episode_idx].append(msg)

    def finish(self, state: PolicyState, episode_idx: int) -> None:
        state.check_active(episode_idx)
        state.active[episode_idx] = False


def truncate_at_stop(text: str, stop: Sequence[str]) -> str:
    """Cut `text` after the earliest stop string (kept), as a sampler with stop strings does."""
    cut = len(text)
    for s in stop:
        j = text.find(s) if s else -1
        if j >= 0:
            cut = min(cut, j + len(s))
    return text[:cut]
