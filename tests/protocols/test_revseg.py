"""ReVSeg episodes: round 2 shows the round-1 keyframe; failures end early; rewards."""

import pytest

from jaxseg.protocols import make_protocol, run_episodes
from jaxseg.segmenter import make_backend

from .helpers import ReplayPolicy, square_sample


def round1(k, desc="the red square"):
    return f"<think>t</think><answer>frame id: {k} ; object description: {desc}</answer>"


def run(protocol, sample, script):
    return run_episodes(protocol, ReplayPolicy(script), [sample], backend=make_backend("oracle"))[0]


@pytest.fixture
def strided():
    return square_sample(stride=5)  # ids 0..55 step 5; target at ids 15..40


def test_round2_shows_the_keyframe_and_the_description(strided):
    protocol = make_protocol("revseg", num_frames=12, keyframe_size=64)
    tr = run(protocol, strided, [round1(25), "<think>t</think><answer>[20, 24, 36, 40]</answer>"])
    assert [t.step for t in tr.turns] == ["round1", "round2"]
    assert tr.turns[1].frames_shown == [25] and tr.turns[1].keyframe_shown == 25
    assert "Detect the red square with bbox coordinates" in tr.turns[1].observation
    assert tr.reward["total"] == 1.0 and tr.metrics["J"] == 1.0
    assert [t.reward["format"] for t in tr.turns] == [0.5, 0.5]  # per-round pieces


def test_round1_failure_ends_the_episode(strided):
    protocol = make_protocol("revseg")
    tr = run(protocol, strided, ["<answer>frame 3</answer>", "never"])
    assert len(tr.turns) == 1 and tr.final.fallback and tr.reward["total"] == 0.0
    unknown_frame = run(protocol, strided, [round1(12), "never"])  # id 12 is not a frame
    assert unknown_frame.turns[0].parse_status == "bad_frame" and len(unknown_frame.turns) == 1


def test_sum_combination_and_unshown_keyframe(strided):
    protocol = make_protocol("revseg", num_frames=4, keyframe_size=64, combine="sum")
    tr = run(protocol, strided, [round1(25), "<think>t</think><answer>[20, 24, 36, 40]</answer>"])
    assert tr.reward["keyframe"] == 0.0  # frame 25 was not among the 4 shown
    assert tr.reward["total"] == pytest.approx(1.0 + 0.0 + 1.0)


def test_no_target(strided):
    protocol = make_protocol("revseg")
    null = square_sample(present=())
    tr = run(protocol, null, [round1(0, "no target"), "never"])
    assert len(tr.turns) == 1 and tr.final.no_target
    assert tr.reward == {"structure": 1.0, "null": 1.0, "total": 2.0}
    assert run(protocol, strided, [round1(0, "no target")]).reward["null"] == -1.0
