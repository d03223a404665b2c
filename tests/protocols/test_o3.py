"""VideoSEG-O3 episodes: select turns fetch the right absolute frames, stop rules, rewards."""

import json

import numpy as np
import pytest

from jaxseg.protocols import make_protocol, run_episodes
from jaxseg.protocols.o3 import best_temporal_score, text_turn_format_ok
from jaxseg.segmenter import make_backend

from .helpers import ReplayPolicy, square_sample


def turn(action, start, end, keyframe, boxes, think="Step 1: a. Step 2: b. Step 3: c. Action: x"):
    vtg = json.dumps({"start": start, "end": end, "keyframe": keyframe})
    return (
        f"<think>{think}</think><{action}><VTG>{vtg}</VTG><box>{json.dumps(boxes)}</box></{action}>"
    )


def run(protocol, sample, script):
    return run_episodes(protocol, ReplayPolicy(script), [sample], backend=make_backend("oracle"))[0]


@pytest.fixture
def strided():
    """12 frames with absolute ids 0, 5, ..., 55; target in positions 3..8 (ids 15..40)."""
    return square_sample(stride=5)


def test_turn0_shows_temporal_and_spatial_frames_with_absolute_ids(strided):
    protocol = make_protocol("o3", temporal_frames=4, spatial_frames=3)
    opening = protocol.opening(strided, np.random.default_rng(0))
    user = opening.messages[-1]
    texts = [p["text"] for p in user["content"] if p["type"] == "text"]
    images = [p["image"] for p in user["content"] if p["type"] == "image"]
    # linspace(0, 11, 4) -> positions 0, 3, 7, 11; linspace(0, 11, 3) -> 0, 5, 11
    assert texts[:4] == ["Frame 0: ", "Frame 15: ", "Frame 35: ", "Frame 55: "]
    assert "Frames 0, 15, 35, 55 (low resolution)" in texts[4]
    assert texts[5:8] == ["Frame 0: ", "Frame 25: ", "Frame 55: "]
    assert [i.shape[0] for i in images] == [84] * 4 + [112] * 3
    assert user["meta"]["shown"] == [0, 15, 35, 55, 25]


def test_select_fetches_frames_of_the_interval_and_the_keyframe(strided):
    protocol = make_protocol("o3", frames_per_round=5)
    box = [[40, 40, 60, 60]]
    tr = run(protocol, strided, [turn("select", 10, 40, 24, box), turn("answer", 15, 45, 25, box)])
    assert [t.step for t in tr.turns] == ["select", "answer"]
    second = tr.turns[1]
    # ids in [10, 40]: 10..40 step 5 (7 frames) -> linspace(0, 6, 5) = 0, 1, 3, 4, 6
    assert second.frames_shown == [10, 15, 25, 30, 40, 25]  # keyframe 24 snaps to 25
    assert second.keyframe_shown == 25
    assert "Frames 10, 15, 25, 30, 40 of [10, 40]" in second.observation


def test_short_interval_shows_every_frame_and_indices_are_clamped(strided):
    protocol = make_protocol("o3")
    tr = run(protocol, strided, [turn("select", 50, 999, -3, []), "<answer>no target</answer>"])
    assert tr.turns[1].frames_shown == [50, 55, 0]  # end clamped to 55, keyframe to 0


def test_stop_rules(strided):
    protocol = make_protocol("o3", max_turns=2)
    box = [[1, 1, 9, 9]]
    backwards = run(protocol, strided, [turn("select", 40, 10, 20, box), "never seen"])
    assert len(backwards.turns) == 1  # end < start stops
    assert backwards.turns[0].parse_status == "ok:not_executed"
    broken = run(protocol, strided, ["<select>{oops</select>", "never seen"])
    assert len(broken.turns) == 1 and broken.turns[0].parse_status == ("malformed_vtg:not_executed")
    at_limit = run(protocol, strided, [turn("select", 10, 40, 20, box)] * 3)
    assert len(at_limit.turns) == 2  # max_turns
    assert at_limit.turns[1].parse_status == "ok:not_executed"
    assert at_limit.final.keyframe == 20  # the unexecuted select's VTG is the final answer


def test_rewards_of_a_perfect_answer_and_of_a_sandbagged_first_turn(strided):
    protocol = make_protocol("o3", keyframe_size=64)  # native size: exact coordinates
    gt = [[20, 24, 36, 40]]
    perfect = run(protocol, strided, [turn("answer", 15, 45, 25, gt)])
    assert perfect.reward["temporal"] == 0.5 and perfect.reward["mask"] == 1.5
    assert perfect.total == pytest.approx(protocol.max_reward(strided))
    assert perfect.reward["progressive"] == 0.0  # one turn
    # turn 0 boxes a quarter of the target (box IoU 0.25: the oracle backend gives no mask,
    # keyframe IoU 0), turn 1 is perfect: R_p pays +2 for the "improvement"
    half = [[20, 24, 28, 32]]
    sandbag = run(
        protocol, strided, [turn("select", 15, 45, 25, half), turn("answer", 15, 45, 25, gt)]
    )
    assert sandbag.reward["progressive"] == 2.0 and sandbag.reward["keyframe_vs_mask"] == 0.0
    assert sandbag.total == pytest.approx(protocol.sandbag_ceiling(strided))
    assert sandbag.total > protocol.max_reward(strided)
    assert [t.reward["keyframe_iou"] for t in sandbag.turns] == [0.0, 1.0]  # per-turn pieces


def test_wrong_keyframe_and_interval_are_penalised(strided):
    protocol = make_protocol("o3", keyframe_size=64)
    tr = run(protocol, strided, [turn("answer", 0, 15, 5, [[20, 24, 36, 40]])])
    assert tr.reward["keyframe"] == -1.0  # id 5 = position 1: target absent
    assert tr.reward["temporal"] == -0.5  # [0, 15) holds no target frame
    # no mask at all: spatial positions 0, 2, 5, 8, 11; GT absent at 0, 2, 11 (both empty:
    # IoU 1 -> +1.5 each), present at 5, 8 (IoU 0 -> -1 each)
    assert tr.reward["mask"] == pytest.approx((3 * 1.5 - 2) / 5)


def test_no_target_answers(strided):
    protocol = make_protocol("o3")
    tr = run(protocol, strided, ["<think>s</think><answer>no target</answer>"])
    assert tr.final.no_target and tr.reward["null"] == -1.0


def test_text_format_check():
    good = turn("select", 1, 4, 2, [[1, 2, 3, 4]])
    assert text_turn_format_ok(good)
    assert not text_turn_format_ok(turn("select", 1, 4, 2, []))
    assert not text_turn_format_ok(good.replace('"keyframe": 2', '"keyframe": 2.5'))
    assert not text_turn_format_ok("junk " + good)
    assert text_turn_format_ok("<think>x</think><answer>no target</answer>")
    assert not text_turn_format_ok("<think>x</think><select>no target</select>")


def test_best_temporal_score():
    p = np.array([0, 1, 1, 0, 1, 0], bool)
    assert best_temporal_score(p, "released") == 1.0
    assert best_temporal_score(p, "iou") == pytest.approx(3 / 4)  # [1, 5) holds 3 of 4


def test_oracle_traces_vary_their_number_of_selects(synth_samples):
    """The oracle looks closer 0, 1 or 2 times (max_turns 3) depending on
    the sample, and every trace still earns the maximum reward."""
    from jaxseg.protocols.scripted import OraclePolicy

    protocol = make_protocol("o3", max_turns=3)
    samples = [s for s in synth_samples if not s.is_null]
    traces = run_episodes(
        protocol, OraclePolicy(protocol, samples), samples, backend=make_backend("oracle")
    )
    selects = [sum(t.step == "select" for t in tr.turns) for tr in traces]
    assert set(selects) == {0, 1, 2}
    for s, tr in zip(samples, traces):
        assert tr.total == pytest.approx(protocol.max_reward(s)), (s.key, tr.reward)


def test_ranked_candidates_are_disjoint_and_hold_the_target_run(synth_samples):
    from jaxseg.protocols import annotations as ann
    from jaxseg.protocols.o3 import ranked_candidates

    ranks = []
    for s in synth_samples:
        cands = ranked_candidates(s)
        if s.is_null:
            assert cands == []
            continue
        assert 1 <= len(cands) <= 3
        best = int(s.areas.argmax())
        assert ann.presence_run(s.presence, best) in cands
        ranks.append(cands.index(ann.presence_run(s.presence, best)))
        spans = sorted(cands)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    # a target visible in frames 3..8 of 12 leaves room for two more; its rank varies by sample
    ranks = set()
    for i in range(12):
        sample = square_sample(present=range(3, 9), key=f"sq{i}")
        cands = ranked_candidates(sample)
        assert len(cands) == 3 and (3, 9) in cands
        ranks.add(cands.index((3, 9)))
    assert ranks == {0, 1, 2}
