"""Stage 0 for a from-scratch policy: referring grounding on single frames.

The seeds start from Qwen2.5-VL, a model that already boxes what a phrase names
(VideoSEG-O3 arXiv 2606.06819 (training), Veason-R1 arXiv 2508.11538 (training): their cold-start SFT and GRPO assume that skill). A tiny
random-weight policy has no such prior, and the protocols' traces teach it slowly: a box is
4 numbers among ~100 loss tokens of reasoning text, behind 8 frames of vision tokens. This
stage gives it the base skill the way a VLM's pretraining does, on what the synthetic world
offers for free: one training-split frame, the scene graph's name of one object ("the red
circle"), and that object's box in the shown image's pixel coordinates, written as
Qwen2.5-VL writes boxes (integers, `[x1, y1, x2, y2]`).

Only training-split videos are used; the held-out split is for evaluation
(`grounding_iou`). The stage is optional (`pretrain.steps = 0` skips it).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence

import numpy as np

from jaxseg.eval.metrics import box_iou
from jaxseg.protocols.annotations import box_of, resize_image, scale_boxes
from jaxseg.protocols.policy import Message, image_part, message, text_part

PROMPT = 'Query: "{query}". Box it in the {S}x{S} image as [x1, y1, x2, y2].'


@dataclasses.dataclass(frozen=True)
class GroundingItem:
    """One frame [S, S, 3] uint8, the phrase naming its object, the object's box [4] (int)."""

    image: np.ndarray
    phrase: str
    box: np.ndarray
    key: str


def grounding_items(source, count: int, *, image_size: int, seed: int) -> list[GroundingItem]:
    """`count` items from single-target samples of `source` (a SampleSource), cycling over
    it; the frame is drawn uniformly among those where the target is visible. Samples without
    a scene-graph description (real datasets, null or multi-target queries) are skipped."""
    rng = np.random.default_rng(seed)
    items: list[GroundingItem] = []
    usable = 0
    for i in range(len(source) * max(1, -(-count // max(len(source), 1))) + len(source)):
        if len(items) >= count:
            break
        sample = source[i % len(source)]
        if sample.object_masks.shape[0] != 1 or not sample.description:
            continue
        visible = np.nonzero(sample.object_masks[0].any(axis=(1, 2)))[0]
        if visible.size == 0:
            continue
        usable += 1
        t = int(rng.choice(visible))
        box = box_of(sample.object_masks[0, t])
        shown = scale_boxes(box[None], sample.frames.shape[1:3], (image_size, image_size))[0]
        items.append(
            GroundingItem(
                image=resize_image(sample.frames[t], image_size),
                phrase=sample.description,
                box=np.round(shown).astype(np.int64),
                key=f"{sample.key}@{t}",
            )
        )
        if i >= len(source) and usable == 0:
            break
    if not items:
        raise ValueError(
            f"{getattr(source, 'root', source)}: no single-target sample with a scene-graph "
            "description; the grounding stage needs the synthetic benchmark (set pretrain.steps=0)"
        )
    return items


def conversation(item: GroundingItem, *, with_answer: bool) -> list[Message]:
    size = item.image.shape[0]
    msgs = [
        message(
            "user", [image_part(item.image), text_part(PROMPT.format(query=item.phrase, S=size))]
        )
    ]
    if with_answer:
        msgs.append(message("assistant", [text_part(json.dumps(item.box.tolist()))]))
    return msgs


def parse_box(text: str | None) -> np.ndarray | None:
    try:
        box = np.asarray(json.loads((text or "").strip()), np.float64)
    except (json.JSONDecodeError, TypeError, ValueError):
        return None
    return box if box.shape == (4,) and np.isfinite(box).all() else None


def grounding_iou(texts: Sequence[str | None], items: Sequence[GroundingItem]) -> dict:
    """Mean box IoU of answers vs GT (unparsable = 0), the parse rate, and the IoU of always
    answering the mean GT box (what a policy that ignores the image can reach)."""
    ious, parsed = [], 0
    for text, item in zip(texts, items, strict=True):
        box = parse_box(text)
        parsed += box is not None
        ious.append(0.0 if box is None else float(box_iou(box[None], item.box[None])[0, 0]))
    mean_box = np.mean([it.box for it in items], axis=0)[None]
    prior = [float(box_iou(mean_box, it.box[None])[0, 0]) for it in items]
    return {
        "box_iou": float(np.mean(ious)),
        "iou>0.5": float(np.mean(np.asarray(ious) > 0.5)),
        "parse_ok": parsed / len(items),
        "mean_box_iou": float(np.mean(prior)),
    }
