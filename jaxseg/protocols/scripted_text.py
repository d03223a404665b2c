"""Text pieces the scripted policies write: coordinates, target names, junk output."""

from __future__ import annotations

import numpy as np

from jaxseg.protocols.sample import EpisodeSample

COORD_DECIMALS = 0  # oracle coordinates: integer pixels, as Qwen2.5-VL writes boxes (fewer tokens)

_JUNK = (
    "<think>",
    "</think>",
    "<answer>",
    "</answer>",
    "<select>",
    "</select>",
    "<VTG>",
    "</VTG>",
    "<box>",
    "</box>",
    '{"keyframe_timestamp": ',
    '"bbox_2d_list": [[',
    '{"start": 3, "end": ',
    "A",
    "B",
    "frame id: ",
    " ; object description: ",
    "no target",
    "[1, 2, 3]",
    "}",
    "]",
    "NaN",
    "the red circle",
    " ",
    "\n",
)


def fmt_num(x: float, decimals: int = COORD_DECIMALS) -> int | float:
    r = round(float(x), decimals)
    return int(r) if float(r).is_integer() else r


def fmt_box(box, decimals: int = COORD_DECIMALS) -> list[int | float]:
    return [fmt_num(v, decimals) for v in np.asarray(box, np.float64).ravel()[:4]]


def fmt_point(point, decimals: int = COORD_DECIMALS) -> list[int | float]:
    return [fmt_num(v, decimals) for v in np.asarray(point, np.float64).ravel()[:2]]


def which_is(sample: EpisodeSample) -> str:
    """ ", which is the red circle" when the source names the target explicitly, else ""."""
    return f", which is {sample.description}" if sample.description else ""


def random_junk(rng: np.random.Generator, max_pieces: int = 12) -> str:
    """A random concatenation of tags, JSON fragments and words (usually malformed)."""
    n = int(rng.integers(0, max_pieces + 1))
    return "".join(_JUNK[int(i)] for i in rng.integers(0, len(_JUNK), n))
