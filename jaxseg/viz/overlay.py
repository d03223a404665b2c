"""Overlay pictures: mask contours, the policy's boxes/points/keyframe and captions on frames.

One picture per frame, two panels side by side when ground truth is known: "ground truth"
(its mask outlined) and "prediction" (the predicted mask outlined, and on the keyframe the
boxes and points the policy answered). A caption bar above the panels carries the whole
query (wrapped, never cut), the frame index, a keyframe marker, the predicted box(es) or
"no target".

Contours and boxes are drawn in a colour no object in the video uses
(:func:`pick_mark_colour` picks, per video, the candidate farthest from every pixel colour
that occurs), with a one-pixel dark rim so they read on any background. Small frames are
enlarged by an integer factor (nearest neighbour, so pixels stay pixels) before drawing.
"""

from __future__ import annotations

import dataclasses
import functools
import textwrap
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

# Candidates for the mark colour: saturated or extreme colours that natural frames and the
# synthetic world's palette (jaxseg.data.synth.world.COLOURS) rarely contain.
MARK_CANDIDATES: tuple[tuple[int, int, int], ...] = (
    (255, 255, 255),  # white
    (0, 255, 0),  # lime
    (255, 0, 255),  # magenta
    (255, 255, 0),  # pure yellow
    (0, 255, 255),  # pure cyan
)
RIM = (16, 16, 16)
BAR = (24, 24, 28)
TEXT = (236, 236, 236)
DIM_TEXT = (170, 170, 178)
KEY = (255, 196, 0)  # the keyframe marker's colour (text only)


@dataclasses.dataclass(frozen=True)
class Answer:
    """The policy's final answer on a video, in native frame pixels (a trace's `final`)."""

    keyframe: int | None = None
    boxes: tuple[tuple[float, float, float, float], ...] = ()
    points: tuple[tuple[float, float], ...] = ()
    no_target: bool = False
    fallback: bool = False

    @classmethod
    def from_json(cls, final: dict[str, Any] | None) -> Answer:
        """From `FinalAction.to_json()` (a trace's "final"); NaN points are dropped."""
        if not final:
            return cls()
        boxes = tuple(tuple(float(v) for v in b) for b in (final.get("boxes") or []))
        points = tuple(
            (float(p[0]), float(p[1]))
            for p in (final.get("points") or [])
            if p is not None and all(np.isfinite(p))
        )
        return cls(
            keyframe=final.get("keyframe"),
            boxes=boxes,
            points=points,
            no_target=bool(final.get("no_target", False)),
            fallback=bool(final.get("fallback", False)),
        )

    def describe(self) -> str:
        if self.no_target:
            return "answer: no target"
        if not self.boxes:
            return "answer: no box"
        boxes = ", ".join("[" + ", ".join(f"{v:.0f}" for v in b) + "]" for b in self.boxes)
        return f"box {boxes}" + (" (fallback)" if self.fallback else "")


# ----------------------------------------------------------------------------- colours
def pick_mark_colour(
    frames: np.ndarray,
    candidates: Sequence[tuple[int, int, int]] = MARK_CANDIDATES,
    min_distance: float = 100.0,
) -> tuple[int, int, int]:
    """A colour no object (and no background) in `frames` [..., 3] uses: the first candidate
    at least `min_distance` (Euclidean RGB) from every colour that covers more than 0.02% of
    the pixels (compression noise aside), else the candidate farthest from them. Preferring
    the first keeps one colour across videos where possible (white for the synthetic world)."""
    pixels = np.asarray(frames, np.float32).reshape(-1, 3)
    if len(pixels) > 400_000:  # a strided subsample sees every object of a video
        pixels = pixels[:: len(pixels) // 400_000 + 1]
    bins, counts = np.unique((pixels // 8).astype(np.int32), axis=0, return_counts=True)
    common = bins[counts > max(1, 0.0002 * len(pixels))] * 8.0 + 4.0
    if len(common) == 0:
        return tuple(candidates[0])
    cand = np.asarray(candidates, np.float32)
    dist = np.sqrt(((common[None] - cand[:, None]) ** 2).sum(-1)).min(axis=1)
    ok = np.nonzero(dist >= min_distance)[0]
    best = int(ok[0]) if len(ok) else int(dist.argmax())
    return tuple(int(v) for v in candidates[best])


# ----------------------------------------------------------------------------- drawing
def scale_for(height: int, width: int, target: int = 240) -> int:
    """Integer enlargement so the shorter side reaches about `target` pixels (>= 1)."""
    return max(1, int(np.ceil(target / max(min(height, width), 1))))


def enlarge(image: np.ndarray, factor: int) -> np.ndarray:
    if factor == 1:
        return image
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def draw_contour(
    image: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int], width: int = 2
) -> np.ndarray:
    """`image` [H, W, 3] with the boundary of `mask` [H, W] (same size) drawn `width` px wide
    inside the mask edge, rimmed by one dark pixel outside it."""
    mask = np.asarray(mask, bool)
    if not mask.any():
        return image
    out = image.copy()
    inner = mask & ~ndimage.binary_erosion(mask, iterations=width, border_value=0)
    rim = ndimage.binary_dilation(mask, iterations=1) & ~mask
    out[rim] = RIM
    out[inner] = colour
    return out


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return _cached_font(int(size))


@functools.lru_cache(maxsize=8)
def _cached_font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - Pillow built without FreeType
        return ImageFont.load_default()


def draw_marks(
    image: np.ndarray,
    answer: Answer,
    colour: tuple[int, int, int],
    scale: int = 1,
    width: int = 2,
) -> np.ndarray:
    """The answer's boxes (rectangles) and points (crosses) on an enlarged frame; box
    coordinates are native pixels, multiplied by `scale`."""
    if not answer.boxes and not answer.points:
        return image
    pil = Image.fromarray(image)
    draw = ImageDraw.Draw(pil)
    h, w = image.shape[:2]
    for box in answer.boxes:
        x1, y1, x2, y2 = (float(v) * scale for v in box)
        x1, x2 = sorted((min(max(x1, 0), w - 1), min(max(x2, 0), w - 1)))
        y1, y2 = sorted((min(max(y1, 0), h - 1), min(max(y2, 0), h - 1)))
        draw.rectangle((x1 - 1, y1 - 1, x2 + 1, y2 + 1), outline=RIM, width=1)
        draw.rectangle((x1, y1, x2, y2), outline=colour, width=width)
    arm = 3 * max(scale, 2)
    for x, y in answer.points:
        x, y = x * scale, y * scale
        for dx, dy in ((arm, 0), (0, arm)):
            draw.line((x - dx, y - dy, x + dx, y + dy), fill=RIM, width=width + 2)
            draw.line((x - dx, y - dy, x + dx, y + dy), fill=colour, width=width)
    return np.asarray(pil)


def caption_bar(width: int, lines: Sequence[tuple[str, tuple[int, int, int]]], size: int = 13):
    """[h, width, 3] dark bar with `lines` (text, colour), each wrapped to the width."""
    font = _font(size)
    char_w = max(font.getlength("abcdefghijklmnopqrstuvwxyz") / 26, 1)
    per_line = max(int((width - 12) / char_w), 8)
    wrapped = [(part, c) for text, c in lines for part in textwrap.wrap(text, per_line) or [""]]
    line_h = size + 4
    bar = Image.new("RGB", (width, 6 + line_h * len(wrapped)), BAR)
    draw = ImageDraw.Draw(bar)
    for i, (text, colour) in enumerate(wrapped):
        draw.text((6, 3 + i * line_h), text, fill=colour, font=font)
    return np.asarray(bar)


def _label(panel: np.ndarray, text: str) -> np.ndarray:
    pil = Image.fromarray(panel)
    draw = ImageDraw.Draw(pil)
    font = _font(11)
    w = int(font.getlength(text)) + 8
    draw.rectangle((0, 0, w, 15), fill=BAR)
    draw.text((4, 1), text, fill=TEXT, font=font)
    return np.asarray(pil)


# ----------------------------------------------------------------------------- frames
def annotate_frame(
    frame: np.ndarray,
    pred_mask: np.ndarray | None,
    *,
    gt_mask: np.ndarray | None = None,
    query: str = "",
    frame_index: int | None = None,
    num_frames: int | None = None,
    answer: Answer | None = None,
    colour: tuple[int, int, int] | None = None,
    scale: int | None = None,
) -> np.ndarray:
    """One captioned picture [H', W', 3] uint8 of `frame` [H, W, 3]: "ground truth" and
    "prediction" panels side by side when `gt_mask` is given, else the prediction alone.

    The keyframe (``frame_index == answer.keyframe``) is marked in the caption and gets the
    answer's boxes and points on the prediction panel."""
    frame = np.asarray(frame, np.uint8)[..., :3]
    h, w = frame.shape[:2]
    answer = answer or Answer()
    colour = colour or pick_mark_colour(frame)
    scale = scale or scale_for(h, w)
    big = enlarge(frame, scale)
    is_key = frame_index is not None and answer.keyframe == frame_index

    pred = big
    if pred_mask is not None:
        pred = draw_contour(big, enlarge(np.asarray(pred_mask, bool), scale), colour)
    if is_key:
        pred = draw_marks(pred, answer, colour, scale)
    empty = pred_mask is not None and not np.asarray(pred_mask).any()
    panels = [_label(pred, "prediction (empty mask)" if empty else "prediction")]
    if gt_mask is not None:
        gt = draw_contour(big, enlarge(np.asarray(gt_mask, bool), scale), colour)
        panels.insert(0, _label(gt, "ground truth"))
    gap = np.full((big.shape[0], 4, 3), BAR, np.uint8)
    body = panels[0] if len(panels) == 1 else np.concatenate([panels[0], gap, panels[1]], 1)
    if is_key:  # the keyframe is framed in the marker colour as well as named
        body = body.copy()
        body[:3], body[-3:], body[:, :3], body[:, -3:] = KEY, KEY, KEY, KEY

    where = ""
    if frame_index is not None:
        where = f"frame {frame_index}" + (f" / {num_frames}" if num_frames else "")
    lines: list[tuple[str, tuple[int, int, int]]] = []
    if query:
        lines.append((f'"{query}"', TEXT))
    status = [where] if where else []
    if is_key:
        status.append(">> KEYFRAME <<")
    elif answer.keyframe is not None:
        status.append(f"keyframe {answer.keyframe}")
    status.append(answer.describe())
    lines.append(("  |  ".join(status), KEY if is_key else DIM_TEXT))
    return np.concatenate([caption_bar(body.shape[1], lines), body], axis=0)


def annotate_video(
    frames: np.ndarray,
    pred_masks: np.ndarray | None,
    *,
    gt_masks: np.ndarray | None = None,
    query: str = "",
    frame_ids: Sequence[int] | None = None,
    answer: Answer | None = None,
) -> np.ndarray:
    """[T, H', W', 3]: :func:`annotate_frame` for every frame, one mark colour and one
    caption height for the whole video (so it plays as a video). `frame_ids` are the frames'
    indices in the video (default 0..T-1); `answer.keyframe` is one of them."""
    frames = np.asarray(frames, np.uint8)[..., :3]
    t = len(frames)
    ids = list(range(t)) if frame_ids is None else [int(i) for i in frame_ids]
    colour = pick_mark_colour(frames)
    scale = scale_for(*frames.shape[1:3])
    out = [
        annotate_frame(
            frames[i],
            None if pred_masks is None else pred_masks[i],
            gt_mask=None if gt_masks is None else gt_masks[i],
            query=query,
            frame_index=ids[i],
            num_frames=max(ids) + 1 if ids else None,
            answer=answer,
            colour=colour,
            scale=scale,
        )
        for i in range(t)
    ]
    height = max(o.shape[0] for o in out)
    return np.stack([_pad_top(o, height) for o in out])


def _pad_top(image: np.ndarray, height: int) -> np.ndarray:
    """Pads the caption bar (top) so every frame of a video has one height."""
    if image.shape[0] == height:
        return image
    pad = np.full((height - image.shape[0], image.shape[1], 3), BAR, np.uint8)
    return np.concatenate([pad, image], axis=0)


def pick_positions(num_frames: int, keyframe: int | None, count: int) -> list[int]:
    """`count` frame positions spread over the video, always including the keyframe."""
    count = max(1, min(count, num_frames))
    positions = set(np.linspace(0, num_frames - 1, count).round().astype(int).tolist())
    if keyframe is not None and 0 <= keyframe < num_frames and keyframe not in positions:
        positions.discard(min(positions, key=lambda p: abs(p - keyframe)))
        positions.add(int(keyframe))
    return sorted(positions)


def tile(images: Sequence[np.ndarray], cols: int, gap: int = 6) -> np.ndarray:
    """Images (any sizes) in a grid, `cols` per row, on the caption colour."""
    rows = [images[i : i + cols] for i in range(0, len(images), cols)]
    cell_h = max(im.shape[0] for im in images)
    cell_w = max(im.shape[1] for im in images)
    sheet = np.full(
        (len(rows) * (cell_h + gap) + gap, cols * (cell_w + gap) + gap, 3), 255, np.uint8
    )
    for r, row in enumerate(rows):
        for c, im in enumerate(row):
            y, x = gap + r * (cell_h + gap), gap + c * (cell_w + gap)
            sheet[y : y + im.shape[0], x : x + im.shape[1]] = im
    return sheet
