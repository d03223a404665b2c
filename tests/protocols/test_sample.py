"""EpisodeSample: validation, and the two constructors (reader record, synthetic video)."""

import numpy as np
import pytest

from jaxseg.data.readers import read_revos
from jaxseg.data.synth import SynthConfig, generate_video, write_benchmark
from jaxseg.data.synth.queries import descriptions, noun_phrase, select
from jaxseg.protocols.sample import EpisodeSample, from_record, from_synth

from .helpers import square_sample


def test_validation():
    s = square_sample()
    with pytest.raises(ValueError, match="do not match"):
        EpisodeSample("k", "q", s.frames, s.object_masks[:, :3], s.frame_ids)
    with pytest.raises(ValueError, match="strictly increasing"):
        EpisodeSample("k", "q", s.frames, s.object_masks, (0,) * s.num_frames)
    with pytest.raises(ValueError, match="uint8"):
        EpisodeSample("k", "q", s.frames.astype(float), s.object_masks, s.frame_ids)


def test_positions_of_absolute_ids():
    s = square_sample(stride=5)
    assert s.position_of(25) == 5 and s.position_of(26) is None and s.position_of("x") is None
    assert s.nearest_position(27) == 5 and s.nearest_position(-4) == 0
    assert s.boxes_at(5).tolist() == [[20, 24, 36, 40]] and s.boxes_at(0).shape == (0, 4)
    assert not s.is_null and square_sample(present=()).is_null


def test_from_synth_description_names_the_targets():
    cfg = SynthConfig.preset("easy", size=64, frames=(8, 8))
    video = generate_video(0, "t", 0, cfg)
    checked = 0
    for q, query in enumerate(video.queries):
        s = from_synth(video, q)
        assert s.object_masks.shape[0] == len(query["targets"])
        np.testing.assert_array_equal(s.object_masks, video.masks[query["targets"]])
        if s.description and len(query["targets"]) == 1:
            (target,) = query["targets"]
            phrases = {"the " + noun_phrase(f): f for f in descriptions(video.graph, target)}
            assert s.description in phrases
            assert select(video.graph, phrases[s.description]) == [target]  # names it alone
            checked += 1
    assert checked


def test_from_record_matches_the_generator(tmp_path):
    cfg = SynthConfig.preset("easy", size=64, frames=(8, 8))
    write_benchmark(tmp_path, {"valid": 1}, seed=3, cfg=cfg, progress=False)
    video = generate_video(3, "valid", 0, cfg)
    index = read_revos(tmp_path, "valid")
    for q, record in enumerate(index):
        s = from_record(record)
        assert s.query == video.queries[q]["exp"] and s.frame_ids == tuple(range(8))
        targets = video.queries[q]["targets"]
        np.testing.assert_array_equal(s.object_masks, video.masks[targets])
        assert s.frames.shape == video.frames.shape  # JPEG: values differ, size does not
