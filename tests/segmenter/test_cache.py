import numpy as np
import pytest

from jaxseg.segmenter.cache import CachingBackend, request_key
from jaxseg.segmenter.interface import (
    MaskRequest,
    MaskResult,
    ObjectPrompt,
    VideoHandle,
    handle_for,
)


class CountingBackend:
    """Deterministic fake: masks encode the request's keyframe; counts requests it sees."""

    name = "fake"

    def __init__(self):
        self.seen = 0

    def register_video(self, frames, video_id=None):
        return handle_for(frames, video_id)

    def segment(self, requests):
        self.seen += len(requests)
        out = []
        for r in requests:
            t, h, w = r.video.shape
            m = np.zeros((len(r.prompts), t, h, w), bool)
            m[:, r.keyframe] = True
            out.append(MaskResult(tuple(p.obj_id for p in r.prompts), m, np.ones(t, bool), "fake"))
        return out

    def close(self):
        pass


V = VideoHandle("vid", 4, 8, 8)


def req(box, keyframe=1, video=V):
    return MaskRequest(video, keyframe, (ObjectPrompt(0, box=box),))


def test_repeats_hit_and_differences_miss():
    inner = CountingBackend()
    cache = CachingBackend(inner, quantum_px=1.0)
    a = cache.segment([req((0, 0, 4, 4))])[0]
    b = cache.segment([req((0.2, 0.1, 4.3, 3.9))])[0]  # within the 1 px quantum
    assert b is a and inner.seen == 1 and cache.stats.hits == 1
    cache.segment([req((0, 0, 5, 4))])  # a different box
    cache.segment([req((0, 0, 4, 4), keyframe=2)])  # a different keyframe
    cache.segment([req((0, 0, 4, 4), video=VideoHandle("other", 4, 8, 8))])
    assert inner.seen == 4 and cache.stats.misses == 4
    assert not a.object_masks.flags.writeable  # shared between hits: read-only


def test_duplicates_in_one_batch_are_sent_once():
    inner = CountingBackend()
    cache = CachingBackend(inner)
    out = cache.segment([req((0, 0, 4, 4)), req((0, 0, 4, 4)), req((1, 1, 4, 4))])
    assert inner.seen == 2 and out[0] is out[1]


def test_lru_evicts_oldest_and_respects_byte_bound():
    inner = CountingBackend()
    cache = CachingBackend(inner, max_entries=2)
    for x in range(3):
        cache.segment([req((x, 0, 6, 6))])
    assert len(cache) == 2
    cache.segment([req((0, 0, 6, 6))])  # evicted -> recomputed
    assert inner.seen == 4
    one = 4 * 8 * 8 + 4  # object_masks bytes + covered bytes
    small = CachingBackend(CountingBackend(), max_bytes=2 * one)
    for x in range(3):
        small.segment([req((x, 0, 6, 6))])
    assert len(small) == 2


def test_key_quantisation():
    assert request_key(req((0, 0, 4, 4)), 4.0) == request_key(req((1.9, 1.0, 5.0, 3.0)), 4.0)
    assert request_key(req((0, 0, 4, 4)), 4.0) != request_key(req((0, 0, 12, 4)), 4.0)
    with pytest.raises(ValueError, match="quantum_px"):
        CachingBackend(CountingBackend(), quantum_px=0)
