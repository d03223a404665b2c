"""Parsers for every protocol's model output. None of them raises on any `str`.

Each returns a small frozen record with `status` ("ok", "no_target" or the reason it failed)
and the parsed values; on failure the values are the protocol's defined fallback (the caller
decides what the fallback does, e.g. Veason-R1's keyframe 0 + box [0, 0, 0, 0]). Format
*rewards* are computed separately by jaxseg.rewards on the raw text; parsing is lenient
where a human reader would be (whitespace, a ```json fence, text around the JSON) so a turn
that is badly formatted but clear still acts, while its format reward says it was not
well-formed.

Cost is linear in the text length: tags are found with str.find, JSON goes through
json.loads with NaN/Infinity and over-deep nesting rejected (jaxseg.rewards.format).

The no-target answer of every protocol is the answer body `no target` (case and a trailing
period ignored), see NO_TARGET.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

from jaxseg.rewards import format as fmt

NO_TARGET = "no target"
MAX_COORD = 1e6  # |coordinate| above this is garbage, not a box
MAX_INDEX = 10**9
MAX_OBJECTS = 64  # more boxes than this in one answer: keep the first MAX_OBJECTS

OK = "ok"
NO_TARGET_STATUS = "no_target"


# ----------------------------------------------------------------------------- primitives
def extract(text: Any, tag: str) -> str | None:
    """Content of the first <tag>…</tag>, or None."""
    return fmt.tag_content(text, tag) if isinstance(text, str) else None


def _unfence(body: str) -> str:
    s = body.strip()
    if s.startswith("```"):
        s = s[3:]
        if s[:4].lower() == "json":
            s = s[4:]
        end = s.rfind("```")
        if end >= 0:
            s = s[:end]
    return s.strip()


def loads_lenient(body: str | None) -> tuple[bool, Any]:
    """(True, value) for the JSON in `body`: the whole (unfenced) body, else the span from
    the first opening bracket to the last matching closing one. (False, None) otherwise."""
    if not isinstance(body, str):
        return False, None
    s = _unfence(body)
    ok, value = fmt.parse_json(s)
    if ok:
        return True, value
    for open_, close in (("{", "}"), ("[", "]")):
        i, j = s.find(open_), s.rfind(close)
        if 0 <= i < j:
            ok, value = fmt.parse_json(s[i : j + 1])
            if ok:
                return True, value
    return False, None


def as_int(v: Any) -> int | None:
    """An int, an integral finite float or a short digit string, within [-1e9, 1e9]."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v if abs(v) <= MAX_INDEX else None
    if isinstance(v, float) and math.isfinite(v) and v.is_integer() and abs(v) <= MAX_INDEX:
        return int(v)
    if isinstance(v, str) and re.fullmatch(r"\s*-?\d{1,9}\s*", v):
        return int(v)
    return None


def as_box(v: Any) -> tuple[float, float, float, float] | None:
    """[x1, y1, x2, y2] of finite numbers with |x| <= 1e6 (orientation not checked)."""
    if fmt.is_box(v) and all(abs(x) <= MAX_COORD for x in v):
        return tuple(float(x) for x in v)  # type: ignore[return-value]
    return None


def as_point(v: Any) -> tuple[float, float] | None:
    if fmt.is_point(v) and all(abs(x) <= MAX_COORD for x in v):
        return (float(v[0]), float(v[1]))
    return None


def is_no_target(body: str | None) -> bool:
    if not isinstance(body, str):
        return False
    return body.strip().rstrip(".").strip().lower() == NO_TARGET


def answer_body(text: Any) -> str | None:
    return extract(text, "answer")


@dataclasses.dataclass(frozen=True)
class Parsed:
    """Base of every parse result: `status` is "ok", "no_target" or the failure reason."""

    status: str

    @property
    def ok(self) -> bool:
        return self.status == OK

    @property
    def no_target(self) -> bool:
        return self.status == NO_TARGET_STATUS


# ----------------------------------------------------------------------------- veason
@dataclasses.dataclass(frozen=True)
class KeyframeBoxes(Parsed):
    """A keyframe (absolute index) and boxes on it. status "ok" / "no_target" / failure."""

    keyframe: int | None = None
    boxes: tuple[tuple[float, float, float, float], ...] = ()


def parse_veason(text: Any) -> KeyframeBoxes:
    """`<answer>{"keyframe_timestamp": k, "bbox_2d_list": [[x1,y1,x2,y2], …]}</answer>`
    (Veason-R1, arXiv 2508.11538 (inference)); malformed boxes are dropped."""
    body = answer_body(text)
    if body is None:
        return KeyframeBoxes("missing_answer")
    if is_no_target(body):
        return KeyframeBoxes(NO_TARGET_STATUS)
    ok, data = loads_lenient(body)
    if not ok or not isinstance(data, dict):
        return KeyframeBoxes("malformed_json")
    keyframe = as_int(data.get("keyframe_timestamp"))
    if keyframe is None:
        return KeyframeBoxes("missing_keyframe")
    raw = data.get("bbox_2d_list")
    if not isinstance(raw, list):
        return KeyframeBoxes("missing_boxes", keyframe)
    boxes = tuple(b for b in (as_box(v) for v in raw[:MAX_OBJECTS]) if b is not None)
    if not boxes:
        return KeyframeBoxes("no_valid_box", keyframe)
    return KeyframeBoxes(OK, keyframe, boxes)


# ----------------------------------------------------------------------------- rcot
@dataclasses.dataclass(frozen=True)
class TextAnswer(Parsed):
    text: str = ""


def parse_description(text: Any, max_chars: int = 2000) -> TextAnswer:
    """VDG: the <answer> text (a video description), whitespace-collapsed and capped."""
    body = answer_body(text)
    if body is None:
        return TextAnswer("missing_answer")
    cleaned = " ".join(body.split())[:max_chars]
    return TextAnswer(OK if cleaned else "empty", cleaned)


@dataclasses.dataclass(frozen=True)
class KeyframeChoice(Parsed):
    keyframe: int | None = None


def parse_keyframe(text: Any) -> KeyframeChoice:
    """KFG: `<answer>{"keyframe": k}</answer>` (a bare integer body is accepted too)."""
    body = answer_body(text)
    if body is None:
        return KeyframeChoice("missing_answer")
    bare = as_int(body.strip()) if len(body) < 32 else None
    if bare is not None:
        return KeyframeChoice(OK, bare)
    ok, data = loads_lenient(body)
    if not ok or not isinstance(data, dict):
        return KeyframeChoice("malformed_json")
    k = as_int(data.get("keyframe"))
    return KeyframeChoice(OK, k) if k is not None else KeyframeChoice("missing_keyframe")


@dataclasses.dataclass(frozen=True)
class Choice(Parsed):
    choice: str | None = None


def parse_choice(text: Any, options: tuple[str, ...] = ("A", "B")) -> Choice:
    """AKS: `<answer>A</answer>` or B. Lenient on "(A)", "A." and "Option A"."""
    body = answer_body(text)
    if body is None:
        return Choice("missing_answer")
    s = body.strip()
    if s in options:
        return Choice(OK, s)
    m = re.fullmatch(r"(?:option\s*)?\(?([A-Za-z])\)?\.?", s[:32], re.IGNORECASE)
    if m and m.group(1).upper() in options:
        return Choice(OK, m.group(1).upper())
    return Choice("not_an_option")


@dataclasses.dataclass(frozen=True)
class GroundedObjects(Parsed):
    """KTG objects: boxes [N] and points [N] (None where an object has no valid point)."""

    boxes: tuple[tuple[float, float, float, float], ...] = ()
    points: tuple[tuple[float, float] | None, ...] = ()


def parse_ktg(text: Any) -> GroundedObjects:
    """KTG: `<answer>[{"bbox_2d": [x1,y1,x2,y2], "point_2d": [x,y]}, …]</answer>`
    (RCoT-Seg, arXiv 2605.07334 (inference)); objects without a valid box are dropped."""
    body = answer_body(text)
    if body is None:
        return GroundedObjects("missing_answer")
    if is_no_target(body):
        return GroundedObjects(NO_TARGET_STATUS)
    ok, data = loads_lenient(body)
    if ok and isinstance(data, dict):
        data = [data]
    if not ok or not isinstance(data, list):
        return GroundedObjects("malformed_json")
    boxes, points = [], []
    for item in data[:MAX_OBJECTS]:
        if not isinstance(item, dict):
            continue
        box = as_box(item.get("bbox_2d"))
        if box is None:
            continue
        boxes.append(box)
        points.append(as_point(item.get("point_2d")))
    if not boxes:
        return GroundedObjects("no_valid_box")
    return GroundedObjects(OK, tuple(boxes), tuple(points))


# ----------------------------------------------------------------------------- o3
@dataclasses.dataclass(frozen=True)
class O3Turn(Parsed):
    """One VideoSEG-O3 turn in the text-coordinate route: action "select" or "answer" (None
    if neither tag), the VTG interval [start, end) and keyframe (absolute indices), boxes on
    the keyframe. status "ok" / "no_target" / failure reason."""

    action: str | None = None
    start: int | None = None
    end: int | None = None
    keyframe: int | None = None
    boxes: tuple[tuple[float, float, float, float], ...] = ()

    @property
    def has_vtg(self) -> bool:
        return self.start is not None and self.end is not None and self.keyframe is not None


def _action_of(text: str) -> tuple[str | None, str | None]:
    """The first of <select>…</select> / <answer>…</answer> in the text."""
    found = []
    for name in ("select", "answer"):
        body = extract(text, name)
        if body is not None:
            found.append((text.find(f"<{name}>"), name, body))
    if not found:
        return None, None
    _, name, body = min(found)
    return name, body


def parse_o3_turn(text: Any) -> O3Turn:
    """`<select|answer><VTG>{"start": s, "end": e, "keyframe": k}</VTG><box>[[…], …]</box>
    </select|answer>`; `<answer>no target</answer>` abstains. A VTG without a usable box list
    is status "no_valid_box" but keeps its interval (the select still acts)."""
    if not isinstance(text, str):
        return O3Turn("missing_action")
    action, body = _action_of(text)
    if action is None or body is None:
        return O3Turn("missing_action")
    if action == "answer" and is_no_target(body):
        return O3Turn(NO_TARGET_STATUS, action)
    ok, vtg = loads_lenient(extract(body, "VTG"))
    if not ok or not isinstance(vtg, dict):
        return O3Turn("malformed_vtg", action)
    s, e, k = (as_int(vtg.get(key)) for key in ("start", "end", "keyframe"))
    if s is None or e is None or k is None:
        return O3Turn("malformed_vtg", action)
    ok, raw = loads_lenient(extract(body, "box"))
    if ok and fmt.is_box(raw):
        raw = [raw]
    boxes = ()
    if ok and isinstance(raw, list):
        boxes = tuple(b for b in (as_box(v) for v in raw[:MAX_OBJECTS]) if b is not None)
    return O3Turn(OK if boxes else "no_valid_box", action, s, e, k, boxes)


# ----------------------------------------------------------------------------- revseg
_ROUND1 = re.compile(
    r"\s*frame\s+id\s*:\s*(\d{1,9})\s*;\s*object\s+description\s*:\s*(.{1,500}?)\s*$",
    re.IGNORECASE | re.DOTALL,
)


@dataclasses.dataclass(frozen=True)
class RevsegRound1(Parsed):
    keyframe: int | None = None
    description: str = ""


def parse_revseg_round1(text: Any) -> RevsegRound1:
    """`<answer> frame id: k ; object description: d </answer>` (ReVSeg, arXiv 2512.02835 (inference)); a
    description of `no target` abstains."""
    body = answer_body(text)
    if body is None:
        return RevsegRound1("missing_answer")
    if len(body) > 1000:
        return RevsegRound1("too_long")
    m = _ROUND1.match(body)
    if m is None:
        return RevsegRound1("malformed")
    desc = " ".join(m.group(2).split())
    k = int(m.group(1))
    if is_no_target(desc):
        return RevsegRound1(NO_TARGET_STATUS, k)
    return RevsegRound1(OK, k, desc)


def parse_single_box(text: Any) -> KeyframeBoxes:
    """ReVSeg round 2: one box, as `[x1,y1,x2,y2]`, `[[…]]`, `{"bbox_2d": …}` or
    `[{"bbox_2d": …}]` (the forms jaxseg.rewards.revseg.format_reward accepts); the
    keyframe is not part of this answer."""
    body = answer_body(text)
    if body is None:
        return KeyframeBoxes("missing_answer")
    if is_no_target(body):
        return KeyframeBoxes(NO_TARGET_STATUS)
    ok, data = loads_lenient(body)
    if not ok:
        return KeyframeBoxes("malformed_json")
    if isinstance(data, list) and len(data) == 1 and not fmt.is_box(data):
        data = data[0]
    if isinstance(data, dict):
        data = data.get("bbox_2d")
    box = as_box(data)
    return KeyframeBoxes(OK, None, (box,)) if box is not None else KeyframeBoxes("no_valid_box")
