"""`encode` hooks: turn a sampled clip + its expression into model inputs.

An encode function maps a `Clip` to a dict of numpy arrays. Two are provided:
- `ByteEncode`: prompt text as UTF-8 bytes (no model needed; tests and pipeline benchmarks);
- `Qwen25VLEncode`: the Qwen2.5-VL path. Frames go through transformers' Qwen2-VL image
  processor, each frame becomes `<|vision_start|><|image_pad|>*n<|vision_end|>` preceded by
  its absolute frame index as a timestamp "(t s)" (Veason-R1's absolute frame indexing,
  seeds_methods.md §3(a)), and the M-RoPE positions come from
  the family's `get_rope_index` (jaxseg.models.family).
Both are module-level classes so grain can pickle them into worker processes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

IMAGE_PLACEHOLDER = "<image>"
DEFAULT_INSTRUCTION = (
    "You are given {num} frames sampled from a video. Each image is preceded by its "
    "timestamp.\nGiven the following expression: '{query}', identify the timestamp where the "
    "target is best represented. Then, locate the target in that frame by predicting the "
    "bounding box(es).\nFirst, output the thinking process in <think> </think> tags, and then "
    "output the result within <answer> </answer> tags."
)


@dataclasses.dataclass
class Clip:
    """What frame sampling + resizing hands to `encode`.

    frames: [M, h, w, 3] uint8; masks: [M, h, w] bool (target union) or None;
    frame_ids: [M] absolute frame indices; positions: [M] positions in the video's frame list;
    keyframe: position of the pseudo-keyframe (keyframe sampling) or -1.
    """

    video_id: str
    exp_id: str
    expression: str
    type_id: int
    frames: np.ndarray
    masks: np.ndarray | None
    frame_ids: np.ndarray
    positions: np.ndarray
    keyframe: int
    original_size: tuple[int, int]


def user_prompt(clip: Clip, instruction: str = DEFAULT_INSTRUCTION) -> str:
    """The user turn: "(12s)<image>, (20s)<image>, ...\\n" + instruction (Veason-R1 layout)."""
    stamps = ", ".join(f"({int(t)}s){IMAGE_PLACEHOLDER}" for t in clip.frame_ids)
    query = clip.expression.strip().rstrip(".").lower()
    return stamps + "\n" + instruction.format(num=len(clip.frame_ids), query=query)


@dataclasses.dataclass(frozen=True)
class ByteEncode:
    """input_ids = UTF-8 bytes of the prompt (+1, so 0 stays the pad id)."""

    instruction: str = DEFAULT_INSTRUCTION

    def __call__(self, clip: Clip) -> dict[str, np.ndarray]:
        ids = np.frombuffer(user_prompt(clip, self.instruction).encode("utf-8"), np.uint8)
        ids = ids.astype(np.int32) + 1
        return {"input_ids": ids, "attention_mask": np.ones_like(ids)}


def _chat(tokenizer: Any, system: str, user: str) -> str:
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    # Qwen2.5's template for plain-text turns
    return (
        f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


@dataclasses.dataclass
class Qwen25VLEncode:
    """tokenizer: a transformers tokenizer holding Qwen2.5-VL's special tokens;
    image_processor: `Qwen2VLImageProcessorPil` (or any with the same call signature);
    config: a policy family's config (token ids, merge size; jaxseg.models.family).

    Returns input_ids / attention_mask [L] int32, position_ids [3, L] int32,
    pixel_values [P, C*T*p*p] float32, image_grid_thw [M, 3] int32.
    """

    tokenizer: Any
    image_processor: Any
    config: Any
    system_prompt: str = "You are a helpful assistant."
    instruction: str = DEFAULT_INSTRUCTION

    def __call__(self, clip: Clip) -> dict[str, np.ndarray]:
        from jaxseg.models.family import family_of

        vision = self.image_processor(images=list(clip.frames), return_tensors="np")
        grid = np.asarray(vision["image_grid_thw"], dtype=np.int64)
        merge = self.config.vision.spatial_merge_size
        text = _chat(self.tokenizer, self.system_prompt, user_prompt(clip, self.instruction))
        pieces = text.split(IMAGE_PLACEHOLDER)
        if len(pieces) - 1 != len(grid):
            raise ValueError(f"{len(pieces) - 1} image placeholders for {len(grid)} frames")
        start = self.tokenizer.convert_ids_to_tokens(self.config.vision_start_token_id)
        end = self.tokenizer.convert_ids_to_tokens(self.config.vision_end_token_id)
        pad = self.tokenizer.convert_ids_to_tokens(self.config.image_token_id)
        out = pieces[0]
        for thw, piece in zip(grid, pieces[1:]):
            out += start + pad * int(np.prod(thw) // merge**2) + end + piece
        ids = np.asarray(self.tokenizer(out, add_special_tokens=False)["input_ids"], np.int64)
        n_pad = int((ids == self.config.image_token_id).sum())
        if n_pad != int(np.prod(grid, axis=1).sum() // merge**2):
            raise ValueError("tokenizer split the image placeholder tokens; check its vocab")
        mask = np.ones_like(ids)
        positions, _ = family_of(self.config).get_rope_index(
            ids[None], image_grid_thw=grid, attention_mask=mask[None], config=self.config
        )
        return {
            "input_ids": ids.astype(np.int32),
            "attention_mask": mask.astype(np.int32),
            "position_ids": positions[:, 0].astype(np.int32),
            "pixel_values": np.asarray(vision["pixel_values"], np.float32),
            "image_grid_thw": grid.astype(np.int32),
        }
