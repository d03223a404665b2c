"""Observation messages: frames as separate images, each preceded by its ABSOLUTE frame index
in text (Veason-R1's absolute frame indexing, arXiv 2508.11538; VideoSEG-O3's index lines, arXiv
2606.06819), resized to the protocol's square image size."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jaxseg.protocols.annotations import resize_image
from jaxseg.protocols.policy import Message, image_part, message, text_part
from jaxseg.protocols.sample import EpisodeSample


def frame_parts(
    sample: EpisodeSample, positions: Sequence[int], size: int, label: str = "Frame {id}: "
) -> list[dict[str, Any]]:
    """[label(id), image] per position; ids are sample.frame_ids[position]."""
    parts: list[dict[str, Any]] = []
    for p in positions:
        parts.append(text_part(label.format(id=sample.frame_ids[p])))
        parts.append(image_part(resize_image(sample.frames[p], size)))
    return parts


def id_list(sample: EpisodeSample, positions: Sequence[int]) -> str:
    return ", ".join(str(sample.frame_ids[p]) for p in positions)


def user_message(
    parts: Sequence[dict[str, Any]],
    *,
    step: str,
    sample: EpisodeSample,
    shown: Sequence[int] = (),
    keyframe: int | None = None,
    **meta: Any,
) -> Message:
    """A user turn with its environment meta: step name, sample key, absolute ids shown."""
    return message(
        "user",
        parts,
        meta={
            "step": step,
            "sample_key": sample.key,
            "shown": [int(sample.frame_ids[p]) for p in shown],
            "keyframe": None if keyframe is None else int(sample.frame_ids[keyframe]),
            **meta,
        },
    )
