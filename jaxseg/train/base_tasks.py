"""The grounded base's curriculum: the skills a pretrained VLM brings to the seeds, taught on
the synthetic world from scratch.

Veason-R1, RCoT-Seg, VideoSEG-O3 and ReVSeg all start from a Qwen-VL that already boxes what a
phrase names, counts, knows colours and says when nothing matches (each paper's §on the base
model / cold start). A random-weight policy has none of it, so the base is pretrained on an
endless stream of fresh synthetic frames (`generate_video` under its own seed and split, never
the benchmark's videos) with these single-frame tasks:

* ``square``: the locate probe's frame (one bright square of side S/8 on a dark plain
  background, no video), asked in the fewest words: location with nothing else to learn;
* ``cell``: 'Which 4x4 grid cell (A-P, row by row) holds the centre of the red circle?' -> a letter:
  location alone, answered in one token;
* ``box``: 'Query: "the red circle". Box every match in the SxS image as [[x1, y1, x2, y2], ...],
  or answer no target.' -> ``[[x1, y1, x2, y2]]`` for the one object the phrase names in that
  frame (the shortest unique description among the objects visible in it);
* ``boxes``: the same prompt for a plural phrase matching 2+ visible objects ("the red shapes")
  -> every box, left to right;
* ``absent``: the same prompt for a phrase no visible object matches -> ``no target``;
* ``count``: 'How many circles are in the image?' -> a digit;
* ``colour``: 'What colour is the small star?' -> a colour word;
* ``restate``: 'Query: "the shape that stops moving". Repeat the query word for word.' -> the
  query: one of the synthetic benchmark's own query forms (referring, reasoning, null) drawn
  from the frame's video, copied from the prompt. Every seed's reasoning restates the query
  before resolving it; a base that never read text back cannot (a step-33000 base fine-tuned on
  veason's traces got the query's content words right 37% of the time teacher-forced,
  `bench/probe_trace.py`, and greedily restated another query and boxed another object).
  With `pretrain.base.copy` the attention-supervised head is fitted to look at the prompt
  token each answer position copies (jaxseg.train.objectness, L_copy).
* ``frames``: 4-8 frames of one video, each after its index as the protocols show them
  ('Frame 3: <image>'), then 'Query: "the red circle". Box every match in frame 9 of the SxS
  images ...' -> the boxes in that frame (attention supervision binds the answer to the named
  object's tokens in that frame, jaxseg.train.objectness): grounding in the frame a trace picked (its
  keyframe), among frames of the same objects. A base taught on single frames boxed at IoU
  0.25 on them, while the fine-tuned veason policy's boxes on its keyframe scored a spatial
  reward of ~0.02 (GRPO rollouts of the demo).
* ``quote``: the same query, asked 'Begin your reasoning by restating it.' -> the sentence every
  protocol's trace opens with, ``<think>The query asks for "the shape that stops moving".``:
  the copy mid-answer, after the opening quote, where a trace makes it. A base taught only
  ``restate`` copied a query that opens its answer and not one inside a trace (query words
  0.00 teacher-forced on veason's traces, `bench/probe_trace.py --stage base`).

Boxes are the visible mask's extent in the shown S x S image (S drawn from `image_sizes`,
the sides the protocols show), written as the protocols write them. The answer format of
``box``/``boxes``/``absent`` is the protocols' `bbox_2d_list` / "no target", so SFT starts from
a policy that already speaks it.

A curriculum (`CurriculumConfig`) changes the task mix and the scenes over steps: location
first (``square``, then ``cell`` on single-object frames), then ``cell`` among a few objects,
then boxes, then the full mix on full scenes, later with ``restate``. Location is the plateau:
a from-scratch policy's answer token first attends to all visual tokens alike, and their mean
carries no position, so a one-token location answer (the densest signal there is) comes
before multi-token boxes. Every batch
is a pure function of (seed, step), so a resumed run sees exactly the stream an unbroken one
would.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxseg.data.synth.generate import generate_video
from jaxseg.data.synth.world import COLOUR_NAMES, SHAPES, SIZE_NAMES, SynthConfig
from jaxseg.eval.metrics import box_iou
from jaxseg.protocols.annotations import box_of, resize_image, scale_boxes
from jaxseg.protocols.policy import Message, image_part, message, text_part

TASKS = (
    "square",
    "cell",
    "box",
    "boxes",
    "absent",
    "count",
    "colour",
    "restate",
    "quote",
    "frames",
)
BOX_PROMPT = (
    'Query: "the {phrase}". Box every match in the {S}x{S} image as [[x1, y1, x2, y2], ...], '
    "or answer no target."
)
# short on purpose: at first the answer token attends to every token alike, so the shorter the
# text around the 16 visual tokens, the larger their share of the signal
CELL_PROMPT = "Which 4x4 grid cell (A-P, row by row) holds the centre of the {phrase}?"
CELLS = "ABCDEFGHIJKLMNOP"
# the shortest question of all, for the first steps (the locate probe asks with no words at all)
SQUARE_PROMPT = "Which 4x4 grid cell (A-P) holds the square?"
COUNT_PROMPT = "How many {plural} are in the image? Answer with a number."
COLOUR_PROMPT = "What colour is the {phrase}? Answer with one word."
RESTATE_PROMPT = 'Query: "{query}". Repeat the query word for word.'
FRAMES_PROMPT = (
    'Query: "the {phrase}". Box every match in frame {k} of the {S}x{S} images as '
    "[[x1, y1, x2, y2], ...], or answer no target."
)
FRAMES_SHOWN = (4, 8)  # how many frames a `frames` item shows, at least / at most (veason 8)
# worded apart from the answer's opening, so the longest span the answer repeats is the query
QUOTE_PROMPT = 'Query: "{query}". Begin your reasoning by restating it.'
# the opening of every protocol's trace (jaxseg.protocols: veason, rcot, revseg)
QUOTE_ANSWER = "<think>The query asks for {quoted}."
NO_TARGET = "no target"
# the attributes a phrase names an object by, each with its values (the world's words)
ATTRIBUTES = (("colour", COLOUR_NAMES), ("shape", SHAPES), ("size", SIZE_NAMES))
MIN_VISIBLE_PX = 40  # at 128 px: a visible object is at least this many pixels


@dataclasses.dataclass(frozen=True)
class BaseItem:
    """One training/eval item: image [S, S, 3] uint8, task, prompt, answer text, for box
    tasks the GT boxes [K, 4] in the shown image (K = 0 for absent), and every visible
    object's box `objects [M, 4]` there whatever the task asks (the objectness target,
    jaxseg.train.objectness)."""

    image: np.ndarray
    task: str
    prompt: str
    answer: str
    boxes: np.ndarray
    key: str
    objects: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 4), np.int64))
    text_first: bool = False  # the question before the image (else after, as the protocols)
    # the boxes [R, 4] of the object(s) the question names (where an answer should look:
    # jaxseg.train.objectness's attention supervision); R = 0 when it names none visible
    referent: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 4), np.int64))
    # each of `objects`' attributes [M, 3] as class indices into ATTRIBUTES (colour, shape,
    # size): what its visual tokens are taught to name (jaxseg.train.objectness's L_desc);
    # [0, 3] where the objects are not world objects (the square task)
    object_attributes: np.ndarray = dataclasses.field(
        default_factory=lambda: np.zeros((0, 3), np.int64)
    )
    # a multi-frame item (`frames`): (frame index, image [S, S, 3]) per shown frame, in order,
    # `image` being the asked-about one
    frames: tuple[tuple[int, np.ndarray], ...] = ()
    frame_position: int = 0  # which of `frames` is `image`, the asked-about one
    # per shown frame, its visible objects' (boxes [M, 4] there, attributes [M, 3]): the
    # supervised heads' targets in every frame (ObjectnessLoss.frames_targets)
    frame_objects: tuple[tuple[np.ndarray, np.ndarray], ...] = ()

    def conversation(self, *, with_answer: bool) -> list[Message]:
        if self.frames:  # the protocols' layout: 'Frame <index>: ' before each frame
            shown = [p for i, f in self.frames for p in (text_part(f"Frame {i}: "), image_part(f))]
        else:
            shown = [image_part(self.image)]
        text = [text_part(self.prompt)]
        msgs = [message("user", text + shown if self.text_first else shown + text)]
        if with_answer:
            msgs.append(message("assistant", [text_part(self.answer)]))
        return msgs

    @property
    def salient_boxes(self) -> np.ndarray:
        """The boxes [K, 4] the objectness target marks: with the question first the visual
        tokens can read it, so the asked-for object(s) of a location task; otherwise every
        visible object (visual tokens before the question cannot know which is asked)."""
        if self.text_first and self.task in ("square", "cell", "box", "boxes"):
            return self.boxes
        return self.objects


# every single-frame skill on full scenes: the curriculum's last phases, `restate` added on top
FULL_MIX = {"cell": 0.1, "box": 0.5, "boxes": 0.1, "absent": 0.1, "count": 0.1, "colour": 0.1}


@dataclasses.dataclass(frozen=True)
class CurriculumConfig:
    """phases: (first step, task -> sampling weight), sorted by step. scenes: (first step,
    `SynthConfig` overrides) sorted by step: what the frames of that stretch look like (one
    object on a plain background first: location before binding a phrase to one of several,
    before clutter). image_sizes: shown sides S.

    The default is the location-first schedule: `square` (the locate probe's task; how long a
    tiny Qwen3-VL sits on its plateau depends on the initial draw, README), then `cell` on
    single-object world frames, then
    `cell` among 2-3 objects (the phrase now picks one: binding), then boxes, then the full mix
    on full scenes, from step 33000 with `restate` (the committed run added it there at 0.15 of
    the mix, raised to 0.4 at 34000: after 1000 steps it copied 2% of held-out queries exactly),
    and from step 38000 `quote` (the copy inside a trace's opening sentence), from 38500
    `frames` (boxing in one frame of several).

    frames_shown: (first step, (fewest, most) frames a `frames` item shows). The committed
    run showed 4-8 from 38500; at step 39249 its `frames` answers were stereotyped boxes at
    no object (held-out IoU 0.008, mean-box prior 0.022), and even one frame under its
    'Frame k: ' label, or the `box` prompt with that label before the image, fell to the
    prior (0.002-0.02) where the same frames under the `box` prompt alone scored 0.195: text
    before the image was what the base had never seen. So from 39250 one or two frames (the
    `box` skill under the label, then a second frame to tell apart); at 40249
    (`bench/probe_layout.py`, 32 items) one labelled frame scored 0.180 (`box` 0.242), two
    0.074, 4-8 0.001, so from 40500 one to four. A `frames` item carries every head's target
    in every frame it shows (`ObjectnessLoss.frames_targets`): the dense signal that taught the
    labelled single frame. (The committed run fitted multi-frame items' binding alone from
    39000 to 41249 and nothing of them before: at 40999 two frames boxed 0.054 and the boxes
    of 4-8 hit no object in any frame, 0.033.)
    """

    phases: tuple[tuple[int, dict[str, float]], ...] = (
        (0, {"square": 1.0}),
        (750, {"square": 0.3, "cell": 0.7}),
        (2000, {"cell": 0.7, "colour": 0.15, "count": 0.15}),
        (3500, {"cell": 0.3, "box": 0.5, "colour": 0.1, "count": 0.1}),
        (6000, dict(FULL_MIX)),
        (33000, {**FULL_MIX, "restate": 0.15}),
        (34000, {**FULL_MIX, "restate": 0.4}),
        (38000, {**FULL_MIX, "restate": 0.15, "quote": 0.35}),
        (38500, {**FULL_MIX, "box": 0.3, "frames": 0.4, "restate": 0.1, "quote": 0.2}),
    )
    scenes: tuple[tuple[int, dict[str, Any]], ...] = (
        (0, {"objects": (1, 1), "textured_prob": 0.0}),
        (2000, {"objects": (2, 3), "textured_prob": 0.0}),
        (3500, {"objects": (2, 4)}),
        (6000, {}),
    )
    image_sizes: tuple[int, ...] = (112, 140)
    frames_per_video: int = 2  # frames of one video are alike: fewer, more videos
    # (first step, probability an item asks its question before the image): first the
    # answer follows the visual tokens closely and they can see the question (the locate
    # probe's layout); from the first multi-object phase on, more and more items in the
    # protocols' order (image, then question), half of them from the boxes on, all of them
    # from 11000: with the question first the visual tokens themselves mark the asked object,
    # and the attention-supervised head learnt to look at that mark instead of matching the
    # phrase (held-out, image first, at step 11000: its mass on the named object 0.35, an even
    # spread over the visible objects 0.37)
    text_first: tuple[tuple[int, float], ...] = ((0, 1.0), (2000, 0.7), (3500, 0.5), (11000, 0.0))
    frames_shown: tuple[tuple[int, tuple[int, int]], ...] = (
        (0, FRAMES_SHOWN),
        (39250, (1, 2)),
        (40500, (1, 4)),
    )

    def weights_at(self, step: int) -> dict[str, float]:
        return _phase_at(self.phases, step)

    def text_first_at(self, step: int) -> float:
        return float(_phase_at(self.text_first, step)) if self.text_first else 0.0

    def frames_shown_at(self, step: int) -> tuple[int, int]:
        lo, hi = _phase_at(self.frames_shown, step) if self.frames_shown else FRAMES_SHOWN
        return int(lo), int(hi)

    def synth_at(self, step: int, synth: SynthConfig) -> SynthConfig:
        """`synth` with the overrides of the scene phase `step` is in."""
        overrides = _phase_at(self.scenes, step) if self.scenes else {}
        return dataclasses.replace(synth, **{k: _as_field(v) for k, v in overrides.items()})


def _phase_at(phases, step: int):
    current = phases[0][1]
    for start, value in phases:
        if step >= start:
            current = value
    return current


def _as_field(value):
    # configs hand ranges over as lists; SynthConfig's ranges are tuples
    return tuple(value) if isinstance(value, list) else value


def cell_of(box: np.ndarray, size: int) -> str:
    """The letter of the 4x4 grid cell (row-major A-P) holding the centre of `box [4]` in an
    `size` px square image: location alone, as a one-token answer."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    col = min(int(cx * 4 // size), 3)
    row = min(int(cy * 4 // size), 3)
    return CELLS[row * 4 + col]


# ----------------------------------------------------------------------------- one frame
def square_item(rng, size: int, key: str) -> BaseItem:
    """The locate probe's item: a bright square of side `size // 8` at a uniform position on a
    dark plain background [S, S, 3], and the 4x4 cell of its centre."""
    image = np.zeros((size, size, 3), np.uint8) + rng.integers(0, 80, 3).astype(np.uint8)
    s = size // 8
    cx, cy = (int(v) for v in rng.integers(s // 2, size - s // 2, 2))
    x0, y0 = cx - s // 2, cy - s // 2
    image[y0 : y0 + s, x0 : x0 + s] = rng.integers(120, 256, 3).astype(np.uint8)
    box = np.array([[x0, y0, x0 + s, y0 + s]], np.int64)
    return BaseItem(
        image, "square", SQUARE_PROMPT, cell_of(box[0], size), box, key, box, referent=box
    )


def _frame_objects(video, t: int) -> list[dict[str, Any]]:
    """Objects visible in frame t with their attributes there and their visible box."""
    out = []
    for i, obj in enumerate(video.graph["objects"]):
        if obj["visible_area"][t] < MIN_VISIBLE_PX:
            continue
        box = box_of(video.masks[i, t])
        if box is None:
            continue
        out.append(
            {
                "shape": obj["shape"],
                "colour": obj["colour"][t],
                "size": obj["size"][t],
                "box": box,
                "id": i,
            }
        )
    return out


_KEY_SETS = (("shape",), ("colour",), ("colour", "shape"), ("size", "shape"))
_KEY_SETS_FULL = _KEY_SETS + (("size", "colour"), ("size", "colour", "shape"))


def _phrase(flt: dict[str, str], plural: bool = False) -> str:
    words = [flt[k] for k in ("size", "colour") if k in flt]
    noun = flt.get("shape", "shape")
    words.append((noun + ("es" if noun.endswith("x") else "s")) if plural else noun)
    return " ".join(words)


def _matching(objs: list[dict], flt: dict[str, str]) -> list[dict]:
    return [o for o in objs if all(o[k] == v for k, v in flt.items())]


def _unique_filter(rng, objs: list[dict], target: dict) -> dict[str, str] | None:
    options = []
    for keys in _KEY_SETS_FULL:
        flt = {k: target[k] for k in keys}
        if _matching(objs, flt) == [target]:
            options.append(flt)
    if not options:
        return None
    n = min(len(f) for f in options)
    short = [f for f in options if len(f) == n]
    return short[int(rng.integers(len(short)))]


def _box_text(boxes: np.ndarray) -> str:
    return json.dumps([[int(round(v)) for v in b] for b in boxes])


def _absent_filter(rng, objs: list[dict], video) -> dict[str, str] | None:
    """A phrase naming nothing visible: mostly near misses (an attribute of a visible object
    swapped), so the answer depends on the image, not on the phrase alone."""
    from jaxseg.data.synth.world import COLOUR_NAMES, SHAPES

    for _ in range(8):
        base = objs[int(rng.integers(len(objs)))] if objs else None
        if base is not None and rng.random() < 0.7:
            flt = {"colour": base["colour"], "shape": base["shape"]}
            key = "colour" if rng.random() < 0.5 else "shape"
            flt[key] = str(rng.choice(COLOUR_NAMES if key == "colour" else SHAPES))
        else:
            flt = {"colour": str(rng.choice(COLOUR_NAMES)), "shape": str(rng.choice(SHAPES))}
        if not _matching(objs, flt):
            return flt
    return None


def make_item(
    rng, video, t: int, task: str, size: int, key: str, shown_frames: tuple[int, int] = FRAMES_SHOWN
) -> BaseItem | None:
    """One item of `task` on frame t of `video` shown at `size` px, or None when the frame
    does not support it. shown_frames: (fewest, most) frames a `frames` item shows."""
    if task == "square":
        return square_item(rng, size, key)
    objs = _frame_objects(video, t)
    hw = video.frames.shape[1:3]

    def shown(boxes):  # frame boxes -> [K, 4] in the shown S x S image
        b = scale_boxes(np.asarray(boxes).reshape(-1, 4), hw, (size, size))
        return np.round(b).astype(np.int64)

    item = _frame_item(rng, video, t, task, size, key, objs, shown, shown_frames)
    if item is None:
        return None
    named = item.referent if len(item.referent) else item.boxes  # location tasks: the answer

    def described(frame_objs):  # (boxes [M, 4] shown, attributes [M, 3])
        attributes = [[names.index(o[a]) for a, names in ATTRIBUTES] for o in frame_objs]
        return (
            shown([o["box"] for o in frame_objs]),
            np.asarray(attributes, np.int64).reshape(-1, len(ATTRIBUTES)),
        )

    boxes, attributes = described(objs)
    per_frame = tuple(
        (boxes, attributes) if i == t else described(_frame_objects(video, i))
        for i, _ in item.frames
    )
    return dataclasses.replace(
        item,
        objects=boxes,
        referent=named,
        object_attributes=attributes,
        frame_objects=per_frame,
    )


def _frame_item(rng, video, t, task, size, key, objs, shown, shown_frames) -> BaseItem | None:
    """make_item's world-frame tasks, on the frame's visible `objs`."""
    image = resize_image(video.frames[t], size)

    if task == "frames":
        if not objs:
            return None
        target = objs[int(rng.integers(len(objs)))]
        flt = _unique_filter(rng, objs, target)
        n = video.frames.shape[0]
        shown_count = min(int(rng.integers(shown_frames[0], shown_frames[1] + 1)), n)
        if flt is None or shown_count < shown_frames[0]:
            return None
        others = rng.choice([i for i in range(n) if i != t], shown_count - 1, replace=False)
        order = sorted([t, *(int(i) for i in others)])
        frames = tuple((i, image if i == t else resize_image(video.frames[i], size)) for i in order)
        boxes = shown(target["box"])
        prompt = FRAMES_PROMPT.format(phrase=_phrase(flt), k=t, S=size)
        return BaseItem(
            image,
            task,
            prompt,
            _box_text(boxes),
            boxes,
            key,
            frames=frames,
            frame_position=order.index(t),
        )
    if task in ("box", "cell"):
        if not objs:
            return None
        target = objs[int(rng.integers(len(objs)))]
        flt = _unique_filter(rng, objs, target)
        if flt is None:
            return None
        boxes = shown(target["box"])
        if task == "cell":
            return BaseItem(
                image,
                task,
                CELL_PROMPT.format(phrase=_phrase(flt)),
                cell_of(boxes[0], size),
                boxes,
                key,
            )
        prompt = BOX_PROMPT.format(phrase=_phrase(flt), S=size)
        return BaseItem(image, task, prompt, _box_text(boxes), boxes, key)
    if task == "boxes":
        groups = []
        for keys in (("colour",), ("shape",), ("size",)):
            for o in objs:
                flt = {k: o[k] for k in keys}
                hits = _matching(objs, flt)
                if len(hits) >= 2 and flt not in [g[0] for g in groups]:
                    groups.append((flt, hits))
        if not groups:
            return None
        flt, hits = groups[int(rng.integers(len(groups)))]
        hits = sorted(hits, key=lambda o: (o["box"][0], o["box"][1]))
        boxes = shown([o["box"] for o in hits])
        prompt = BOX_PROMPT.format(phrase=_phrase(flt, plural=True), S=size)
        return BaseItem(image, task, prompt, _box_text(boxes), boxes, key)
    if task == "absent":
        flt = _absent_filter(rng, objs, video)
        if flt is None:
            return None
        prompt = BOX_PROMPT.format(phrase=_phrase(flt), S=size)
        return BaseItem(image, task, prompt, NO_TARGET, np.zeros((0, 4), np.int64), key)
    if task == "count":
        keys = (("colour",), ("shape",))[int(rng.integers(2))]
        pool = [{k: o[k] for k in keys} for o in objs]
        if not pool or rng.random() < 0.15:  # sometimes ask for something absent: 0
            flt = _absent_filter(rng, objs, video)
            flt = {k: flt[k] for k in keys} if flt else None
        else:
            flt = pool[int(rng.integers(len(pool)))]
        if flt is None:
            return None
        hits = _matching(objs, flt)
        prompt = COUNT_PROMPT.format(plural=_phrase(flt, plural=True))
        none = np.zeros((0, 4), np.int64)
        named = shown([o["box"] for o in hits]) if hits else none
        return BaseItem(image, task, prompt, str(len(hits)), none, key, referent=named)
    if task == "colour":
        if not objs:
            return None
        target = objs[int(rng.integers(len(objs)))]
        options = [
            {k: target[k] for k in keys}
            for keys in (("shape",), ("size", "shape"))
            if _matching(objs, {k: target[k] for k in keys}) == [target]
        ]
        if not options:
            return None
        flt = options[-1] if rng.random() < 0.5 else options[0]
        prompt = COLOUR_PROMPT.format(phrase=_phrase(flt))
        none = np.zeros((0, 4), np.int64)
        return BaseItem(
            image, task, prompt, target["colour"], none, key, referent=shown(target["box"])
        )
    if task in ("restate", "quote"):
        queries = [q["exp"] for q in video.queries]
        if not queries:
            return None
        query = queries[int(rng.integers(len(queries)))]
        none = np.zeros((0, 4), np.int64)
        if task == "quote":
            answer = QUOTE_ANSWER.format(quoted=json.dumps(query))
            return BaseItem(image, task, QUOTE_PROMPT.format(query=query), answer, none, key)
        return BaseItem(image, task, RESTATE_PROMPT.format(query=query), query, none, key)
    raise ValueError(f"unknown base task {task!r}; choose from {TASKS}")


# ----------------------------------------------------------------------------- streams
@dataclasses.dataclass(frozen=True)
class BaseStream:
    """Deterministic batches of `BaseItem`s: batch `step` draws its videos and items from
    seed `[seed, step]` and videos `step * videos_per_batch + j` of `split`."""

    seed: int
    split: str
    curriculum: CurriculumConfig
    synth: SynthConfig = SynthConfig()

    def videos_per_batch(self, batch_size: int) -> int:
        return max(1, -(-batch_size // self.curriculum.frames_per_video))

    def batch(self, step: int, batch_size: int) -> list[BaseItem]:
        c = self.curriculum
        rng = np.random.default_rng([self.seed, step])
        weights = c.weights_at(step)
        tasks = list(weights)
        p = np.asarray([weights[t] for t in tasks], np.float64)
        p /= p.sum()
        synth = c.synth_at(step, self.synth)
        text_first = c.text_first_at(step)
        shown_frames = c.frames_shown_at(step)
        items: list[BaseItem] = []
        frames: list[tuple[Any, int, str]] = []  # world frames not yet used: (video, t, key)
        v = step * self.videos_per_batch(batch_size)
        rendered = 0
        while len(items) < batch_size:
            task = tasks[int(rng.choice(len(tasks), p=p))]
            size = int(rng.choice(c.image_sizes))
            first = bool(rng.random() < text_first)
            if task == "square":  # no world frame needed: nothing rendered for it
                item = square_item(rng, size, f"square/{step}/{len(items)}")
                items.append(dataclasses.replace(item, text_first=first))
                continue
            if not frames:
                if rendered > 8 * self.videos_per_batch(batch_size):
                    raise RuntimeError(f"base stream: no items after {rendered} videos")
                video = generate_video(self.seed, self.split, v, synth)
                chosen = rng.choice(video.frames.shape[0], c.frames_per_video, replace=False)
                frames = [(video, int(t), f"{self.split}/{v}@{t}") for t in chosen]
                v += 1
                rendered += 1
            video, t, key = frames.pop(0)
            for attempt in range(4):  # a frame that cannot serve the drawn task: draw again
                if attempt:
                    task = tasks[int(rng.choice(len(tasks), p=p))]
                item = make_item(rng, video, t, task, size, key, shown_frames)
                if item is not None:
                    items.append(dataclasses.replace(item, text_first=first))
                    break
        return items


def eval_items(
    seed: int,
    split: str,
    count: int,
    task: str,
    size: int = 112,
    synth: SynthConfig | None = None,
    text_first: bool = False,
    shown_frames: tuple[int, int] = FRAMES_SHOWN,
) -> list[BaseItem]:
    """`count` held-out items of one task from videos of `split` (full scenes unless `synth`
    says otherwise), image first unless `text_first`; `frames` items show `shown_frames`
    (fewest, most) frames."""
    rng = np.random.default_rng([seed, 7919])
    synth = synth or SynthConfig()
    items: list[BaseItem] = []
    v = 0
    while len(items) < count:
        video = generate_video(seed, split, v, synth)
        t = int(rng.integers(video.frames.shape[0]))
        item = make_item(rng, video, t, task, size, f"{split}/{v}@{t}", shown_frames)
        if item is not None:
            items.append(dataclasses.replace(item, text_first=text_first))
        v += 1
    return items


# ----------------------------------------------------------------------------- scoring
_BOX_LIST = re.compile(r"\[\s*\[.*\]\s*\]", re.S)


def parse_boxes(text: str | None) -> np.ndarray | None:
    """`[[x1, y1, x2, y2], ...]` -> [K, 4]; "no target" -> [0, 4]; anything else None."""
    text = (text or "").strip()
    if text.lower().startswith(NO_TARGET):
        return np.zeros((0, 4))
    m = _BOX_LIST.search(text)
    if not m:
        return None
    try:
        boxes = np.asarray(json.loads(m.group(0)), np.float64)
    except (json.JSONDecodeError, ValueError, TypeError):
        return None
    if boxes.ndim != 2 or boxes.shape[1] != 4 or not np.isfinite(boxes).all():
        return None
    return boxes


def _matched_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean IoU of GT boxes greedily matched to predictions (extra predictions count as
    misses through the denominator max(K_pred, K_gt)); both empty = 1."""
    if len(gt) == 0 and len(pred) == 0:
        return 1.0
    if len(gt) == 0 or len(pred) == 0:
        return 0.0
    iou = box_iou(pred, gt)
    total = 0.0
    used_p, used_g = set(), set()
    for flat in np.argsort(-iou, axis=None):
        i, j = np.unravel_index(flat, iou.shape)
        if i in used_p or j in used_g:
            continue
        used_p.add(i)
        used_g.add(j)
        total += float(iou[i, j])
    return total / max(len(pred), len(gt))


def phrase_names(prompt: str) -> str:
    """What the quoted phrase of a prompt names its object by, in phrase order ("size",
    "colour", "shape" joined by "+"), e.g. "size+shape" for '... "the small circle" ...';
    "" where the prompt quotes no phrase."""
    quoted = prompt.split('"')
    words = quoted[1].split() if len(quoted) > 2 else []
    named = (("size", SIZE_NAMES), ("colour", COLOUR_NAMES), ("shape", SHAPES))
    return "+".join(k for k, vocab in named if any(w in vocab for w in words))


def score(task: str, texts: Sequence[str | None], items: Sequence[BaseItem]) -> dict[str, float]:
    """Held-out metrics of one task, with the prior a policy that ignores the image reaches
    (box: always the mean GT box; count/colour: always the most frequent answer). Box also
    splits its IoU by what the phrase names (`phrase_names`): `iou@colour` over the items
    whose phrase names the object's colour, `iou@shape` over those naming its shape (and
    maybe size) but not its colour: binding by colour vs by shape."""
    if task in ("box", "boxes", "absent", "frames"):
        ious, parsed = [], 0
        for text, item in zip(texts, items, strict=True):
            pred = parse_boxes(text)
            parsed += pred is not None
            ious.append(0.0 if pred is None else _matched_iou(pred, item.boxes))
        out = {"iou": float(np.mean(ious)), "parse_ok": parsed / len(items)}
        if task in ("box", "frames"):
            out["iou>0.5"] = float(np.mean(np.asarray(ious) > 0.5))
            named = [phrase_names(it.prompt).split("+") for it in items]
            for key, keep in (
                ("iou@colour", [("colour" in n) for n in named]),
                ("iou@shape", [("shape" in n and "colour" not in n) for n in named]),
            ):
                if any(keep):
                    out[key] = float(np.mean(np.asarray(ious)[np.asarray(keep)]))
            mean_box = np.mean([it.boxes[0] for it in items], axis=0)[None]
            prior = [float(box_iou(mean_box, it.boxes[:1])[0, 0]) for it in items]
            out["prior_mean_box_iou"] = float(np.mean(prior))
            out["prior_iou>0.5"] = float(np.mean(np.asarray(prior) > 0.5))
        return out
    answers = [(t or "").strip().lower() for t in texts]
    gold = [it.answer.lower() for it in items]
    values, counts = np.unique(gold, return_counts=True)
    out = {
        "accuracy": float(np.mean([a == g for a, g in zip(answers, gold, strict=True)])),
        "prior_majority": float(counts.max() / len(gold)),
        "majority_answer": str(values[counts.argmax()]),
    }
    if task in ("restate", "quote"):  # partial copies too: the share of words in place
        out["word_accuracy"] = float(
            np.mean([_words_in_place(a, g) for a, g in zip(answers, gold)])
        )
    return out


def _words_in_place(answer: str, gold: str) -> float:
    """Share of `gold`'s words that `answer` has at the same word index (extra words in the
    answer count against it through the denominator)."""
    a, g = answer.split(), gold.split()
    return sum(x == y for x, y in zip(a, g)) / max(len(a), len(g), 1)
