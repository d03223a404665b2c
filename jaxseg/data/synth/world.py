"""The synthetic world's vocabulary (shapes, colours, sizes) and the generator's knobs.

Everything the grammar can say lives here, so the tokenizer (`jaxseg.data.tokenizer`) and
the query grammar (`queries.py`) draw from one list.
"""

from __future__ import annotations

import dataclasses
from typing import Any

# Shape outlines in units of the object's nominal radius, centre at the origin, y down.
# Chosen so that no shape is another one rotated (objects never rotate): the diamond is a
# tall rhombus, not a square on its corner.
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "diamond", "hexagon", "cross")

# Saturated colours far from each other and from the (low-saturation) backgrounds.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (50, 90, 235),
    "yellow": (240, 215, 40),
    "purple": (150, 60, 205),
    "orange": (245, 140, 25),
    "cyan": (40, 205, 215),
    "pink": (245, 120, 190),
}
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)

# Nominal radius as a fraction of the frame side. Classes are far apart (x1.5) so that
# "small" / "large" are not judgement calls.
SIZES: dict[str, float] = {"small": 0.05, "medium": 0.075, "large": 0.11}
SIZE_NAMES: tuple[str, ...] = tuple(SIZES)

# ReVOS `type_id`s (VISA tools/eval_revos.py): 0 referring, 1 reasoning, 2 no target.
TYPE_REFERRING, TYPE_REASONING, TYPE_NULL = 0, 1, 2

QUERY_KINDS: tuple[str, ...] = ("referring", "reasoning", "multi", "null")


@dataclasses.dataclass(frozen=True)
class SynthConfig:
    """Knobs of the generator. `SynthConfig.preset("hard")` gives the harder settings.

    Probabilities are per object (events) or per video (interactions). `frames`,
    `objects` are inclusive ranges drawn per video.
    """

    size: int = 128
    frames: tuple[int, int] = (16, 24)
    objects: tuple[int, int] = (2, 6)
    textured_prob: float = 0.5  # else a plain background
    # chroma ramp amplitude (8-bit levels) that writes pixel location into the background
    # (render.position_ramp); 0 = none
    position_ramp: float = 0.0
    # per-object events
    p_static: float = 0.25  # never moves (a good occludee)
    p_enter: float = 0.35
    p_exit: float = 0.25
    p_stop: float = 0.25
    p_start: float = 0.2
    p_colour_change: float = 0.2
    p_size_change: float = 0.15
    # per-video interactions
    p_collision: float = 0.7
    p_occlusion: float = 0.7
    p_stop_after_collision: float = 0.5
    # appearance: probability that a new object copies the shape or colour of an earlier one
    distractor_prob: float = 0.4
    # fraction of the side per frame; the upper end bounds every move (simulate.py)
    speed: tuple[float, float] = (0.008, 0.022)
    # queries
    queries_per_video: int = 6
    query_mix: tuple[tuple[str, float], ...] = (
        ("referring", 0.25),
        ("reasoning", 0.45),
        ("multi", 0.12),
        ("null", 0.18),
    )
    compositional_prob: float = 0.3  # add an attribute filter to a temporal query
    partial_target_weight: float = 2.0  # sampling weight of targets absent from some frames
    jpeg_quality: int = 92

    def __post_init__(self) -> None:
        if self.size < 32:
            raise ValueError(f"SynthConfig.size must be >= 32 px, got {self.size}")
        lo, hi = self.frames
        if not 6 <= lo <= hi:
            raise ValueError(
                f"SynthConfig.frames must be a range (lo, hi), 6 <= lo <= hi: {self.frames}"
            )
        lo, hi = self.objects
        if not 1 <= lo <= hi <= 8:
            raise ValueError(f"SynthConfig.objects must satisfy 1 <= lo <= hi <= 8: {self.objects}")
        kinds = [k for k, _ in self.query_mix]
        unknown = set(kinds) - set(QUERY_KINDS)
        if unknown:
            raise ValueError(f"SynthConfig.query_mix: unknown kinds {sorted(unknown)}")
        weights = [w for _, w in self.query_mix]
        if min(weights, default=0) < 0 or sum(weights) <= 0:
            raise ValueError(
                f"SynthConfig.query_mix: weights must be >= 0 with a positive sum: {weights}"
            )
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_prob") or f.name.startswith("p_"):
                if not 0.0 <= value <= 1.0:
                    raise ValueError(f"SynthConfig.{f.name} must be in [0, 1], got {value}")
        if not 0 <= self.position_ramp <= 20:
            raise ValueError(
                "SynthConfig.position_ramp must be in [0, 20] (chroma stays under the "
                f"segmenter's salience threshold), got {self.position_ramp}"
            )
        if self.partial_target_weight < 0:
            raise ValueError(
                f"SynthConfig.partial_target_weight must be >= 0, got {self.partial_target_weight}"
            )
        lo, hi = self.speed
        if not 0 < lo <= hi:
            raise ValueError(f"SynthConfig.speed must be a range 0 < lo <= hi: {self.speed}")
        if self.queries_per_video < 1:
            raise ValueError("SynthConfig.queries_per_video must be >= 1")

    @classmethod
    def preset(cls, difficulty: str, **overrides: Any) -> SynthConfig:
        """'easy' (few objects, plain, no distractors), 'medium' (defaults), 'hard'."""
        presets: dict[str, dict[str, Any]] = {
            "easy": dict(
                objects=(2, 3),
                textured_prob=0.0,
                distractor_prob=0.1,
                compositional_prob=0.0,
                p_colour_change=0.1,
                p_size_change=0.05,
            ),
            "medium": {},
            "hard": dict(
                objects=(4, 6),
                textured_prob=0.9,
                distractor_prob=0.7,
                compositional_prob=0.6,
                p_enter=0.45,
                p_exit=0.35,
            ),
        }
        if difficulty not in presets:
            raise ValueError(
                f"unknown difficulty {difficulty!r}; expected one of {sorted(presets)}"
            )
        return dataclasses.replace(cls(), **{**presets[difficulty], **overrides})

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["query_mix"] = [list(kv) for kv in self.query_mix]
        return out
