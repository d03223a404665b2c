"""Synthetic reasoning-VOS benchmark: procedural videos of moving shapes with events
(enter, exit, occlusion, stop/start, collision, colour and size change), exact masks, a scene
graph, and queries from a grammar over it, written in the ReVOS layout.

    from jaxseg.data.synth import SynthConfig, write_benchmark
    write_benchmark("data/synth", {"train": 200, "valid": 50}, seed=0, cfg=SynthConfig())

Modules: world (vocabulary, knobs) -> simulate (plan + physics) -> render (frames, masks)
-> scene_graph (what happened) -> queries (grammar, verification) -> generate (one video)
-> writer (ReVOS files) ; show (example page).
"""

from jaxseg.data.synth.generate import SynthVideo, generate_video, video_seed
from jaxseg.data.synth.queries import evaluate
from jaxseg.data.synth.world import SynthConfig
from jaxseg.data.synth.writer import write_benchmark

__all__ = [
    "SynthConfig",
    "SynthVideo",
    "evaluate",
    "generate_video",
    "video_seed",
    "write_benchmark",
]
