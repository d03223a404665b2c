"""One synthetic video, end to end: seed -> scene -> frames + masks -> scene graph -> queries."""

from __future__ import annotations

import dataclasses
import zlib
from typing import Any

import numpy as np

from jaxseg.data.synth.queries import sample_queries
from jaxseg.data.synth.render import render, sample_background
from jaxseg.data.synth.scene_graph import build_scene_graph
from jaxseg.data.synth.simulate import simulate
from jaxseg.data.synth.world import SynthConfig

_MAX_ATTEMPTS = 8


@dataclasses.dataclass
class SynthVideo:
    """frames [T, H, W, 3] uint8; masks [N, T, H, W] bool (visible, after occlusion);
    graph: the scene graph; queries: sampled queries (see `queries.candidates`)."""

    frames: np.ndarray
    masks: np.ndarray
    graph: dict[str, Any]
    queries: list[dict[str, Any]]
    background: dict[str, Any]
    plan: dict[str, Any]
    seed: dict[str, Any]


def video_seed(seed: int, split: str, index: int) -> np.random.SeedSequence:
    """The seed of video `index` of `split`. Splits use different spawn keys, so their
    streams are disjoint for any base seed (numpy SeedSequence guarantees independence)."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be >= 0, got seed={seed} index={index}")
    return np.random.SeedSequence(entropy=seed, spawn_key=(zlib.crc32(split.encode()), index))


def generate_video(seed: int, split: str, index: int, cfg: SynthConfig) -> SynthVideo:
    """Deterministic in (seed, split, index, cfg). Retries (same stream) until the scene
    supports at least one query."""
    ss = video_seed(seed, split, index)
    rng = np.random.default_rng(ss)
    for _ in range(_MAX_ATTEMPTS):
        scene = simulate(rng, cfg)
        background, bg_info = sample_background(rng, cfg)
        rendered = render(scene, background)
        graph = build_scene_graph(scene, rendered)
        queries = sample_queries(graph, rng, cfg)
        if queries:
            return SynthVideo(
                frames=rendered.frames,
                masks=rendered.visible,
                graph=graph,
                queries=queries,
                background=bg_info,
                plan=scene.plan,
                seed={"entropy": seed, "spawn_key": list(ss.spawn_key)},
            )
    raise RuntimeError(
        f"no queryable scene after {_MAX_ATTEMPTS} attempts for seed={seed} split={split} "
        f"index={index}; the config allows too little (objects={cfg.objects})"
    )
