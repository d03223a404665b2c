"""Format checks on raw model text. Every function here accepts any `str` and never raises.

They are linear in the text length: tags are found with one `re.finditer` over a fixed
alternation (no nested quantifiers, so no catastrophic backtracking), and structure is
checked on the resulting tag list. JSON goes through `json.loads` with deep nesting,
huge integers and NaN/Infinity all treated as invalid rather than raising.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
from collections.abc import Sequence
from typing import Any

STRUCTURE_TAGS = ("think", "answer", "select")


@functools.lru_cache(maxsize=32)
def _tag_re(names: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("<(/?)(" + "|".join(re.escape(n) for n in names) + ")>")


@dataclasses.dataclass(frozen=True)
class Tag:
    """One occurrence of <name> (closing=False) or </name> at text[start:end]."""

    name: str
    closing: bool
    start: int
    end: int


def scan_tags(text: str, names: Sequence[str] = STRUCTURE_TAGS) -> list[Tag]:
    """All <name> / </name> occurrences of the given tag names, in order."""
    if not isinstance(text, str):
        return []
    return [
        Tag(m.group(2), m.group(1) == "/", m.start(), m.end())
        for m in _tag_re(tuple(names)).finditer(text)
    ]


@dataclasses.dataclass(frozen=True)
class Turn:
    """A well-formed `<think>T</think> <action>B</action>` turn."""

    think: str
    action: str
    body: str


def parse_turn(text: str, actions: Sequence[str] = ("answer",)) -> Turn | None:
    """Strict structure of one turn, or None.

    The text (surrounding whitespace allowed) must be exactly <think>…</think>, optional
    whitespace, <action>…</action> with action in `actions`, and hold no other
    think/answer/select tag. This is the think-then-answer pattern of Veason-R1 /
    VisionReasoner (`<think>.*?</think>\\s*<answer>.*?</answer>`, fullmatch), made
    strict about stray structure tags, and VideoSEG-O3's `<(answer|select)>` variant.
    """
    if not isinstance(text, str):
        return None
    tags = scan_tags(text)
    if len(tags) != 4:
        return None
    t_open, t_close, a_open, a_close = tags
    if not (
        (t_open.name, t_open.closing) == ("think", False)
        and (t_close.name, t_close.closing) == ("think", True)
        and a_open.name in actions
        and not a_open.closing
        and (a_close.name, a_close.closing) == (a_open.name, True)
    ):
        return None
    if text[: t_open.start].strip() or text[a_close.end :].strip():
        return None
    if text[t_close.end : a_open.start].strip():
        return None
    return Turn(
        think=text[t_open.end : t_close.start],
        action=a_open.name,
        body=text[a_open.end : a_close.start],
    )


def think_answer_format_reward(text: str) -> float:
    """1.0 if the text is exactly one <think>…</think><answer>…</answer> turn, else 0.0."""
    return 1.0 if parse_turn(text, ("answer",)) is not None else 0.0


def tag_content(text: str, name: str) -> str | None:
    """Content of the first <name>…</name> (no nesting), or None."""
    if not isinstance(text, str):
        return None
    open_tag, close_tag = f"<{name}>", f"</{name}>"
    i = text.find(open_tag)
    if i < 0:
        return None
    j = text.find(close_tag, i + len(open_tag))
    if j < 0:
        return None
    return text[i + len(open_tag) : j]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite JSON constant {name}")


def parse_json(text: str | None) -> tuple[bool, Any]:
    """(True, value) for valid strict JSON (no NaN/Infinity), else (False, None)."""
    if not isinstance(text, str):
        return False, None
    try:
        return True, json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError, TypeError):
        return False, None


def is_number(v: Any) -> bool:
    """A finite JSON number (bool is not a number here)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_box(v: Any) -> bool:
    """[x1, y1, x2, y2] of four finite numbers (ordering is the reward's business)."""
    return isinstance(v, (list, tuple)) and len(v) == 4 and all(is_number(x) for x in v)


def is_point(v: Any) -> bool:
    """[x, y] of two finite numbers."""
    return isinstance(v, (list, tuple)) and len(v) == 2 and all(is_number(x) for x in v)
