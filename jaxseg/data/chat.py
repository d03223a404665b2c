"""HF chat messages -> token ids, policy mask and pixels, exactly as Qwen2.5-VL's template.

One encoder for every consumer (SFT examples, sampler prompts, appended turns), so the tokens
a policy is trained on are the tokens it is prompted with. Rendering follows the Qwen2.5-VL
chat template (`jaxseg.data.tokenizer.QWEN2_5_VL_CHAT_TEMPLATE`): a default system turn when
the first message is not one; each message is ``<|im_start|>{role}\\n{content}<|im_end|>\\n``;
an image is ``<|vision_start|>`` + ``<|image_pad|>`` x (merged tokens of its grid) +
``<|vision_end|>``. Text between special tokens is tokenized piece by piece, which equals
tokenizing the whole rendered string (special tokens are never merged across), and is checked
against ``processor.apply_chat_template`` in the tests.

policy_mask marks what an assistant writes: its content and its ``<|im_end|>`` (the end of turn
the sampler stops on); the ``<|im_start|>assistant\\n`` header is part of the prompt.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

DEFAULT_SYSTEM = "You are a helpful assistant."


@dataclasses.dataclass
class EncodedChat:
    """input_ids / policy_mask `[L]`; pixel_values `[P, patch_dim]` float32 and
    image_grid_thw `[n_images, 3]` for the images in order (None when there are none)."""

    input_ids: np.ndarray
    policy_mask: np.ndarray
    pixel_values: np.ndarray | None
    image_grid_thw: np.ndarray | None

    def as_example(self) -> dict[str, np.ndarray]:
        out = {"input_ids": self.input_ids, "policy_mask": self.policy_mask}
        if self.pixel_values is not None:
            out["pixel_values"] = self.pixel_values
            out["image_grid_thw"] = self.image_grid_thw
        return out


def _content_parts(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message.get("content", "")
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return list(content)


class ChatEncoder:
    """Encodes conversations with a Qwen2.5-VL-style processor (tokenizer + image processor)."""

    def __init__(self, processor: Any):
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.image_processor = processor.image_processor
        tok = self.tokenizer
        self._ids = {
            name: tok.convert_tokens_to_ids(name)
            for name in (
                "<|im_start|>",
                "<|im_end|>",
                "<|vision_start|>",
                "<|vision_end|>",
                "<|image_pad|>",
            )
        }
        self.merge = int(getattr(self.image_processor, "merge_size", 2))
        self._cache: dict[str, list[int]] = {}

    def _text(self, text: str) -> list[int]:
        if not text:
            return []
        ids = self._cache.get(text)
        if ids is None:
            ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            if len(self._cache) < 4096:
                self._cache[text] = ids
        return ids

    def encode(
        self,
        messages: Sequence[dict[str, Any]],
        *,
        add_generation_prompt: bool = False,
        add_default_system: bool = True,
        leading_newline: bool = False,
    ) -> EncodedChat:
        """Encodes ``messages``.

        add_default_system: insert the template's default system turn when the first message
        is not a system turn (turn off when appending turns to an existing conversation).
        leading_newline: start with the ``\\n`` that follows a sampled ``<|im_end|>`` (the
        sampler stops on ``<|im_end|>``, so an appended turn begins with the newline the
        template puts after it).
        """
        ids: list[int] = []
        mask: list[int] = []
        images: list[np.ndarray] = []

        def put(tokens: list[int], policy: bool) -> None:
            ids.extend(tokens)
            mask.extend([int(policy)] * len(tokens))

        if leading_newline:
            put(self._text("\n"), False)
        msgs = list(messages)
        if add_default_system and (not msgs or msgs[0].get("role") != "system"):
            msgs.insert(0, {"role": "system", "content": DEFAULT_SYSTEM})
        # images first: their grids decide how many placeholder tokens each one gets
        all_images = [
            np.asarray(p["image"])
            for m in msgs
            for p in _content_parts(m)
            if p.get("type") == "image"
        ]
        pixel_values = grid = None
        if all_images:
            out = self.image_processor(images=all_images, return_tensors="np")
            pixel_values = np.asarray(out["pixel_values"], np.float32)
            grid = np.asarray(out["image_grid_thw"], np.int64).reshape(-1, 3)
        image_i = 0
        for m_i, msg in enumerate(msgs):
            role = msg.get("role")
            if role not in ("system", "user", "assistant"):
                raise ValueError(f"message {m_i}: role {role!r} is not system/user/assistant")
            policy = role == "assistant"
            put([self._ids["<|im_start|>"]] + self._text(f"{role}\n"), False)
            for part in _content_parts(msg):
                kind = part.get("type")
                if kind == "text":
                    put(self._text(str(part.get("text", ""))), policy)
                elif kind == "image":
                    if policy:
                        raise ValueError(f"message {m_i}: an assistant turn cannot hold an image")
                    n = int(np.prod(grid[image_i])) // self.merge**2
                    put(
                        [self._ids["<|vision_start|>"]]
                        + [self._ids["<|image_pad|>"]] * n
                        + [self._ids["<|vision_end|>"]],
                        False,
                    )
                    images.append(grid[image_i])
                    image_i += 1
                else:
                    raise ValueError(f"message {m_i}: content type {kind!r} is not text/image")
            put([self._ids["<|im_end|>"]], policy)
            put(self._text("\n"), False)
        if add_generation_prompt:
            put([self._ids["<|im_start|>"]] + self._text("assistant\n"), False)
        return EncodedChat(
            input_ids=np.asarray(ids, np.int64),
            policy_mask=np.asarray(mask, np.float32),
            pixel_values=pixel_values,
            image_grid_thw=grid,
        )
