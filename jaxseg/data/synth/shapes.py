"""Rasterising one shape to an exact binary footprint (no anti-aliasing, so masks are exact)."""

from __future__ import annotations

import functools
import math

import numpy as np
from PIL import Image, ImageDraw

from jaxseg.data.synth.world import SHAPES


def _regular(n: int, radius: float, phase_deg: float) -> list[tuple[float, float]]:
    return [
        (
            radius * math.cos(math.radians(phase_deg + 360.0 * k / n)),
            radius * math.sin(math.radians(phase_deg + 360.0 * k / n)),
        )
        for k in range(n)
    ]


def _star(outer: float, inner: float) -> list[tuple[float, float]]:
    pts = []
    for k in range(10):
        r = outer if k % 2 == 0 else inner
        a = math.radians(-90.0 + 36.0 * k)
        pts.append((r * math.cos(a), r * math.sin(a)))
    return pts


def _cross(arm: float, half_width: float) -> list[tuple[float, float]]:
    a, w = arm, half_width
    return [(-w, -a), (w, -a), (w, -w), (a, -w), (a, w), (w, w), (w, a), (-w, a), (-w, w),
            (-a, w), (-a, -w), (-w, -w)]  # fmt: skip


@functools.cache
def unit_outline(shape: str) -> tuple[tuple[float, float], ...]:
    """Polygon vertices for a unit nominal radius (the circle is handled separately)."""
    outlines = {
        "square": [(-0.8, -0.8), (0.8, -0.8), (0.8, 0.8), (-0.8, 0.8)],
        "triangle": _regular(3, 1.1, -90.0),
        "star": _star(1.15, 0.48),
        "diamond": [(0.0, -1.1), (0.75, 0.0), (0.0, 1.1), (-0.75, 0.0)],
        "hexagon": _regular(6, 0.95, 0.0),
        "cross": _cross(1.0, 0.36),
    }
    if shape not in outlines:
        raise ValueError(f"no outline for shape {shape!r}")
    return tuple(outlines[shape])


CIRCLE_RADIUS = 0.9


@functools.cache
def circumradius(shape: str) -> float:
    """Farthest footprint point from the centre, per unit nominal radius (used for contact)."""
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")
    if shape == "circle":
        return CIRCLE_RADIUS
    return max(math.hypot(x, y) for x, y in unit_outline(shape))


def footprint(
    shape: str, cx: float, cy: float, radius: float, height: int, width: int
) -> np.ndarray:
    """Binary mask [H, W] of `shape` centred at (cx, cy) px, clipped to the frame."""
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    if shape == "circle":
        r = CIRCLE_RADIUS * radius
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=1)
    else:
        draw.polygon([(cx + radius * x, cy + radius * y) for x, y in unit_outline(shape)], fill=1)
    return np.asarray(canvas, dtype=bool)
