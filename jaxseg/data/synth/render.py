"""Painting a simulated scene: backgrounds, depth-ordered objects, exact per-object masks."""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.ndimage import gaussian_filter

from jaxseg.data.synth.shapes import footprint
from jaxseg.data.synth.simulate import Scene
from jaxseg.data.synth.world import COLOUR_NAMES, COLOURS, SynthConfig


@dataclasses.dataclass
class Rendered:
    """frames [T, H, W, 3] uint8; full / visible [N, T, H, W] bool.

    `full` is an object's footprint inside the frame ignoring other objects; `visible` is
    what is left of it after the objects in front are painted (the ground-truth mask).
    `label` [T, H, W] int16 holds the object painted at each pixel, -1 for background.
    """

    frames: np.ndarray
    full: np.ndarray
    visible: np.ndarray
    label: np.ndarray


def sample_background(rng: np.random.Generator, cfg: SynthConfig) -> tuple[np.ndarray, dict]:
    """A static, low-saturation background [H, W, 3] uint8 (plain or textured)."""
    S = cfg.size
    grey = rng.uniform(45, 120)
    tint = rng.uniform(-12, 12, size=3)
    if cfg.position_ramp > 0:  # keep the ramp the strongest chroma cue (same draws either way)
        tint = tint / 4
    base = np.clip(grey + tint, 0, 255)
    img = np.broadcast_to(base, (S, S, 3)).astype(np.float64) + position_ramp(S, cfg.position_ramp)
    kind = "plain"
    if rng.random() < cfg.textured_prob:
        kind = str(rng.choice(["noise", "stripes", "checker"]))
        noise = gaussian_filter(rng.normal(size=(S, S)), sigma=S / 20, mode="wrap")
        noise = noise / (np.abs(noise).max() + 1e-9) * 18
        yy, xx = np.mgrid[0:S, 0:S].astype(np.float64)
        pattern = np.zeros((S, S))
        if kind == "stripes":
            a = rng.uniform(0, np.pi)
            period = rng.uniform(S / 10, S / 5)
            pattern = 14 * np.sign(np.sin(2 * np.pi * (xx * np.cos(a) + yy * np.sin(a)) / period))
        elif kind == "checker":
            cell = int(rng.integers(S // 12, S // 6))
            pattern = 12 * (((xx // cell) + (yy // cell)) % 2 * 2 - 1)
        img = img + (noise + pattern)[..., None]
    return np.clip(img, 0, 255).astype(np.uint8), {"kind": kind, "grey": round(float(grey), 2)}


def position_ramp(size: int, amplitude: float) -> np.ndarray:
    """[S, S, 3] chroma ramps: R-B grows with x (by 4x amplitude), G-(R+B)/2 with y (3x).

    Why: the Qwen2.5-VL vision tower has only rotary (relative) positions, so on a plain
    background a token's content says nothing about where it is; the released models learn
    absolute location from web-scale pretraining, a from-scratch policy in a 20-minute demo
    cannot (measured: README, "stage-0 grounding"). The ramp puts location into the pixels, as
    layout context does in real scenes. Luminance is untouched and the chroma stays below the
    classical segmenter's salience threshold (chroma <= 2.5x amplitude + 6 of tint)."""
    if amplitude <= 0:
        return np.zeros((size, size, 3))
    u = np.linspace(-1.0, 1.0, size)
    x, y = np.meshgrid(u, u)  # x varies along columns, y along rows
    return amplitude * np.stack([x - y / 2, y, -x - y / 2], axis=-1)


def render(scene: Scene, background: np.ndarray) -> Rendered:
    """Paint objects back to front; visible masks are read off the painted label map."""
    T, N, S = scene.num_frames, scene.num_objects, scene.size
    full = np.zeros((N, T, S, S), bool)
    label = np.full((T, S, S), -1, np.int16)
    frames = np.empty((T, S, S, 3), np.uint8)
    order = np.argsort(scene.depth)  # back to front
    palette = np.array([COLOURS[c] for c in COLOUR_NAMES], np.uint8)
    for t in range(T):
        frame = background.copy()
        for i in order:
            cx, cy = scene.pos[t, i]
            m = footprint(scene.shapes[i], float(cx), float(cy), float(scene.radius[t, i]), S, S)
            full[i, t] = m
            label[t][m] = i
            frame[m] = palette[scene.colour[t, i]]
        frames[t] = frame
    visible = label[None] == np.arange(N, dtype=np.int16)[:, None, None, None]
    return Rendered(frames=frames, full=full, visible=visible, label=label)
