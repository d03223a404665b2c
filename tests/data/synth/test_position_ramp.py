"""The background position ramp: off changes nothing; on writes location into the background
and keeps it below the classical segmenter's salience threshold."""

import numpy as np
import pytest

from jaxseg.data.synth import SynthConfig, generate_video
from jaxseg.data.synth.render import position_ramp
from jaxseg.segmenter.classical import ClassicalConfig


def test_ramp_off_is_the_plain_generator():
    a = generate_video(7, "train", 2, SynthConfig())
    b = generate_video(7, "train", 2, SynthConfig(position_ramp=0.0))
    np.testing.assert_array_equal(a.frames, b.frames)


@pytest.mark.parametrize("index", range(4))
def test_ramp_on_encodes_location_below_salience(index):
    ramped = generate_video(7, "train", index, SynthConfig(position_ramp=20.0))
    plain = generate_video(7, "train", index, SynthConfig())
    np.testing.assert_array_equal(ramped.masks, plain.masks)  # same scene, same draws
    f = ramped.frames.astype(np.int16)
    background = ~ramped.masks.any(0)
    chroma = f.max(-1) - f.min(-1)
    assert chroma[background].max() < ClassicalConfig().salient_chroma
    ramp = position_ramp(64, 20.0)
    assert ramp[0, -1, 0] - ramp[0, -1, 2] > ramp[0, 0, 0] - ramp[0, 0, 2]  # R-B grows with x
    assert ramp[-1, 0, 1] > ramp[0, 0, 1]  # G grows with y


def test_ramp_out_of_range_is_named():
    with pytest.raises(ValueError, match="position_ramp"):
        SynthConfig(position_ramp=30.0)
