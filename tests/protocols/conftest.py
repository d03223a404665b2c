"""Shared synthetic samples for protocol tests (generated in memory, no files)."""

import pytest

from jaxseg.data.synth import SynthConfig, generate_video
from jaxseg.protocols.sample import from_synth


def _samples(seed: int, videos: int, cfg: SynthConfig):
    out = []
    for v in range(videos):
        video = generate_video(seed, "test", v, cfg)
        for q in range(len(video.queries)):
            out.append(from_synth(video, q, key=f"v{v}/q{q}"))
    return out


@pytest.fixture(scope="session")
def synth_samples():
    """Referring, reasoning, multi-target and null queries on small 128 px videos."""
    cfg = SynthConfig.preset("medium", frames=(16, 20), queries_per_video=6)
    return _samples(0, 4, cfg)


@pytest.fixture(scope="session")
def target_samples(synth_samples):
    return [s for s in synth_samples if not s.is_null]


@pytest.fixture(scope="session")
def null_samples(synth_samples):
    return [s for s in synth_samples if s.is_null]
