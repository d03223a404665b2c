"""Scoring a part of the batch while the next part samples (`jaxseg.train.overlap`): the same
episodes, tokens, log-probs and rewards as the serial run, and the scoring really runs while
the policy plays the next part."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from jaxseg.data.synth import SynthConfig, generate_video
from jaxseg.protocols import make_protocol, run_episodes
from jaxseg.protocols.sample import from_synth
from jaxseg.protocols.scripted import OraclePolicy
from jaxseg.segmenter import make_backend
from jaxseg.train.overlap import chunk_bounds, run_overlapped
from jaxseg.train.rollouts import run_recorded


@pytest.fixture(scope="module")
def samples():
    cfg = SynthConfig.preset("medium", frames=(8, 10), queries_per_video=3)
    out = []
    for v in range(2):
        video = generate_video(0, "test", v, cfg)
        out += [from_synth(video, q, key=f"v{v}/q{q}") for q in range(len(video.queries))]
    return out[:5]


def test_chunk_bounds_cover_the_batch_in_order():
    assert chunk_bounds(5, 2) == [(0, 2), (2, 5)]
    assert chunk_bounds(2, 4) == [(0, 1), (1, 2)]
    assert chunk_bounds(6, 1) == [(0, 6)]
    with pytest.raises(ValueError):
        chunk_bounds(3, 0)


class GatedBackend:
    """Classical masks; the first `segment` call waits (up to 60 s) until the policy has
    started the next part, which only happens if scoring runs beside sampling."""

    def __init__(self, started_next: threading.Event):
        self.inner = make_backend("classical")
        self.started_next = started_next
        self.overlapped: list[bool] = []
        self.threads: set[int] = set()

    def register_video(self, frames, video_id=None):
        return self.inner.register_video(frames, video_id)

    def segment(self, requests):
        self.threads.add(threading.get_ident())
        if not self.overlapped:
            self.overlapped.append(self.started_next.wait(timeout=60))
        return self.inner.segment(requests)


class CountingStarts(OraclePolicy):
    def __init__(self, protocol, samples, event: threading.Event):
        super().__init__(protocol, samples)
        self.starts, self.event = 0, event

    def start(self, conversations):
        self.starts += 1
        if self.starts == 2:
            self.event.set()
        return super().start(conversations)


def test_part_one_is_scored_while_part_two_plays(samples):
    protocol = make_protocol("veason")
    started_next = threading.Event()
    backend = GatedBackend(started_next)
    policy = CountingStarts(protocol, samples, started_next)
    traces = run_overlapped(protocol, policy, samples, backend=backend, group_size=2, chunks=2)
    assert backend.overlapped == [True]
    assert threading.get_ident() not in backend.threads  # scored on the worker thread
    serial = run_episodes(
        protocol,
        OraclePolicy(protocol, samples),
        samples,
        backend=make_backend("classical"),
        group_size=2,
    )
    assert [t.sample_index for t in traces] == [t.sample_index for t in serial]
    assert [t.reward for t in traces] == [t.reward for t in serial]


def test_overlapped_sampler_rollouts_equal_the_serial_ones(samples):
    """A sampler-backed policy (the shipped tiny base, temperature 1): each part draws the
    streams the whole batch draws for its rows, so tokens, log-probs and rewards are equal."""
    from jaxseg.data.tokenizer import load_processor
    from jaxseg.models.family import load_pretrained, shipped_base
    from jaxseg.sampling import SamplingParams
    from jaxseg.sampling.policy import SamplerPolicy

    path = shipped_base()
    model, processor = load_pretrained(path), load_processor(path)
    protocol = make_protocol("veason")
    runs = []
    for chunks in (1, 2):
        policy = SamplerPolicy.for_model(
            model, processor, sampling=SamplingParams(1.0, top_k=20), max_new_tokens=12, seed=3
        )
        runs.append(
            run_recorded(
                protocol,
                policy,
                samples[:4],
                backend=make_backend("classical"),
                group_size=2,
                seed=1,
                overlap_chunks=chunks,
            )
        )
    serial, overlapped = runs
    assert len(serial) == len(overlapped) == 8
    for a, b in zip(serial, overlapped, strict=True):
        assert a.trace.sample_key == b.trace.sample_key
        assert a.trace.sample_index == b.trace.sample_index
        assert len(a.turn_info) == len(b.turn_info)
        for ta, tb in zip(a.turn_info, b.turn_info, strict=True):
            assert list(ta["token_ids"]) == list(tb["token_ids"])
            # A part is a smaller batch: XLA may tile its matmuls differently, so float32
            # log-probs agree to ~1e-5 (CI saw 1.0e-5 on a -1.42), not bit for bit.
            np.testing.assert_allclose(ta["logprobs"], tb["logprobs"], atol=1e-4, rtol=0)
        assert a.trace.reward == b.trace.reward
