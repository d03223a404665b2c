"""Veason-R1 episodes: absolute indices in the prompt, fallback, reward pieces."""

import json

import numpy as np
import pytest

from jaxseg.protocols import make_protocol, run_episodes
from jaxseg.segmenter import make_backend

from .helpers import ReplayPolicy, square_sample


def answer(keyframe, boxes):
    body = json.dumps({"keyframe_timestamp": keyframe, "bbox_2d_list": boxes})
    return f"<think>t</think><answer>{body}</answer>"


def run(protocol, sample, script):
    return run_episodes(protocol, ReplayPolicy(script), [sample], backend=make_backend("oracle"))[0]


@pytest.fixture
def strided():
    return square_sample(stride=5)  # ids 0..55 step 5; target at ids 15..40


def test_prompt_shows_sampled_frames_after_their_absolute_index(strided):
    protocol = make_protocol("veason", num_frames=4, image_size=56)
    opening = protocol.opening(strided, np.random.default_rng(0))
    parts = opening.messages[-1]["content"]
    labels = [p["text"] for p in parts if p["type"] == "text"][:4]
    assert labels == ["Frame 0: ", "Frame 15: ", "Frame 35: ", "Frame 55: "]
    assert all(p["image"].shape == (56, 56, 3) for p in parts if p["type"] == "image")
    assert opening.shown == [0, 15, 35, 55]


def test_keyframe_sampler_is_shared_by_the_group(strided):
    protocol = make_protocol("veason", num_frames=4, sampling="keyframe")
    traces = run_episodes(
        protocol, ReplayPolicy(["x"]), [strided], backend=make_backend("oracle"), group_size=3
    )
    shown = [t.turns[0].frames_shown for t in traces]
    assert shown[0] == shown[1] == shown[2]
    # the pseudo-keyframe is one of the 5 largest-area frames, so a target frame is shown
    assert any(15 <= i <= 40 for i in shown[0])


def test_perfect_answer(strided):
    protocol = make_protocol("veason", num_frames=12, image_size=64)
    tr = run(protocol, strided, [answer(25, [[20, 24, 36, 40]])])
    assert tr.reward == {
        "format": 2.0,
        "keyframe": 1.0,
        "spatial": 1.0,
        "propagation": 1.0,
        "null": 0.0,
        "total": 5.0,
    }


def test_parse_failure_uses_keyframe_zero_and_an_empty_box(strided):
    protocol = make_protocol("veason")
    tr = run(protocol, strided, ["<think>t</think><answer>{broken</answer>"])
    assert tr.final.fallback and tr.final.keyframe == 0
    assert tr.final.boxes.tolist() == [[0.0, 0.0, 0.0, 0.0]]
    assert tr.reward["keyframe"] == tr.reward["spatial"] == tr.reward["propagation"] == 0.0
    assert tr.reward["format"] == 1.0  # the structure is right, the JSON is not
    assert tr.metrics["J"] == pytest.approx(6 / 12)  # empty masks: right only where no target


def test_unshown_keyframe_earns_no_keyframe_reward(strided):
    protocol = make_protocol("veason", num_frames=4, image_size=64)  # shows 0, 15, 35, 55
    tr = run(protocol, strided, [answer(25, [[20, 24, 36, 40]])])
    assert tr.reward["keyframe"] == 0.0 and tr.reward["spatial"] == 0.0
    assert tr.metrics["J"] == 1.0  # the masks still come from frame 25


def test_extra_box_halves_spatial_reward_but_not_propagation(strided):
    protocol = make_protocol("veason", num_frames=12, image_size=64)
    tr = run(protocol, strided, [answer(25, [[20, 24, 36, 40], [0, 0, 5, 5]])])
    assert tr.reward["spatial"] == 0.5  # IoU 1 / max(2 predicted, 1 GT)
    assert tr.reward["propagation"] == 1.0  # only matched boxes propagate for R_u


def test_no_target(strided):
    protocol = make_protocol("veason")
    said = "<think>t</think><answer>no target</answer>"
    assert run(protocol, strided, [said]).reward["null"] == -1.0
    null = square_sample(present=())
    tr = run(protocol, null, [said])
    assert tr.reward == {"structure": 1.0, "null": 1.0, "total": 2.0}
    hallucinated = run(protocol, null, [answer(25, [[1, 1, 9, 9]])])
    assert hallucinated.reward["null"] == -1.0
