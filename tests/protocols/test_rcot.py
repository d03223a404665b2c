"""RCoT-Seg episodes: the A/B loop shows the right absolute frames, lambda bound, fallbacks,
and the KTG reward at the paper's 840 px scale."""

import json

import pytest

from jaxseg.protocols import make_protocol, run_episodes
from jaxseg.protocols.rcot import aks_truth
from jaxseg.segmenter import make_backend

from .helpers import ReplayPolicy, square_sample

VDG = "<think>look</think><answer>A red square appears and leaves.</answer>"


def kfg(k):
    return f'<think>pick</think><answer>{{"keyframe": {k}}}</answer>'


def aks(choice):
    return f"<think>check</think><answer>{choice}</answer>"


def ktg(objects):
    return f"<think>ground</think><answer>{json.dumps(objects)}</answer>"


# the square at native (20, 24, 36, 40) in 64 px frames, at keyframe_size 128 (x2)
GT_OBJ = {"bbox_2d": [40, 48, 72, 80], "point_2d": [56, 64]}


def run(protocol, sample, script):
    return run_episodes(protocol, ReplayPolicy(script), [sample], backend=make_backend("oracle"))[0]


@pytest.fixture
def strided():
    return square_sample(stride=5)  # ids 0..55 step 5; target at ids 15..40


def test_loop_shows_candidate_then_whole_video_on_rejection(strided):
    protocol = make_protocol("rcot", keyframe_size=128)
    script = [VDG, kfg(0), aks("B"), kfg(25), aks("A"), ktg([GT_OBJ])]
    tr = run(protocol, strided, script)
    assert [t.step for t in tr.turns] == ["vdg", "kfg", "aks", "kfg", "aks", "ktg"]
    ids = list(range(0, 60, 5))
    assert tr.turns[0].frames_shown == ids  # vdg: the whole video
    assert tr.turns[1].frames_shown == []  # first kfg: video already in context
    assert tr.turns[2].frames_shown == [0] and tr.turns[2].keyframe_shown == 0
    assert tr.turns[3].frames_shown == ids  # re-selection re-runs on the full video
    assert "Frames 0 were rejected" in tr.turns[3].observation
    assert tr.turns[4].frames_shown == [25] and tr.turns[4].keyframe_shown == 25
    assert "frame 25" in tr.turns[5].observation
    assert [t.action.get("truth") for t in tr.turns if t.step == "aks"] == ["B", "A"]
    assert tr.final.keyframe == 25
    assert tr.reward == {
        "aks": 3.0,
        "ktg_format": 3.0,
        "ktg_accuracy": 3.0,
        "null": 0.0,
        "total": 9.0,
    }
    assert tr.metrics["J"] == 1.0


def test_light_reselection_shows_sixteen_or_fewer_sampled_frames(strided):
    protocol = make_protocol("rcot", light_reselect=True, light_frames=4)
    tr = run(protocol, strided, [VDG, kfg(0), aks("B"), kfg(25), aks("A"), ktg([])])
    assert tr.turns[3].frames_shown == [0, 15, 35, 55]  # linspace(0, 11, 4) -> 0, 3, 7, 11


def test_reselection_stops_after_lambda_rounds(strided):
    protocol = make_protocol("rcot", max_reselect=2)
    script = [VDG] + [kfg(0), aks("B")] * 2 + [ktg([GT_OBJ])] + ["unused"] * 4
    tr = run(protocol, strided, script)
    assert [t.step for t in tr.turns].count("aks") == 2  # lambda checks in all
    assert tr.turns[-1].step == "ktg"
    assert tr.final.keyframe == 0  # the last candidate stands
    assert protocol.max_turns == 1 + 2 + 2 + 1


def test_lambda_zero_runs_no_aks_turn(strided):
    protocol = make_protocol("rcot", max_reselect=0, keyframe_size=128)
    tr = run(protocol, strided, [VDG, kfg(25), ktg([GT_OBJ])])
    assert [t.step for t in tr.turns] == ["vdg", "kfg", "ktg"]
    assert tr.turns[2].frames_shown == [25] and tr.turns[2].keyframe_shown == 25
    assert tr.reward["ktg_accuracy"] == 3.0 and tr.reward["aks"] == 0.0
    assert protocol.max_turns == 3


def test_stage_tasks_use_the_paper_labels(strided):
    """AKS: A = the largest-area frame, B = a zero-area frame, 1:1; KTG: the largest-area frame;
    one turn each, the prompt holds the keyframe, the description and the query only."""
    import numpy as np

    aks_p = make_protocol("rcot", task="aks", keyframe_size=128)
    best = int(np.argmax(strided.areas))
    truths = []
    for seed in range(200):
        o = aks_p.opening(strided, np.random.default_rng(seed))
        pos, truth = o.context["position"], o.context["truth"]
        assert (truth == "A" and pos == best) or (truth == "B" and strided.areas[pos] == 0)
        truths.append(truth)
        assert len(o.shown) == 1
    assert 80 < truths.count("B") < 120
    assert aks_p.max_turns == 1
    tr = run(aks_p, strided, [aks("A")])
    assert [t.step for t in tr.turns] == ["aks"] and "Video description" in tr.turns[0].observation
    assert set(tr.reward) == {"aks", "total"} and tr.reward["total"] in (1.0, 3.0)

    ktg_p = make_protocol("rcot", task="ktg", keyframe_size=128)
    tr = run(ktg_p, strided, [ktg([GT_OBJ])])
    assert tr.turns[0].frames_shown == [strided.frame_ids[best]]
    assert tr.reward["ktg_format"] == 3.0 and tr.reward["ktg_accuracy"] == 3.0
    assert "aks" not in tr.reward and tr.metrics["J"] == 1.0


def test_ktg_point_distance_is_l1(strided):
    """A point 12 px right and 12 px down (at 840 px) of the GT point: L1 24 < 30 passes,
    then 20 + 20: L1 40 fails where the Euclidean 28.3 would pass."""
    from jaxseg.protocols.rcot import ktg_objects

    (obj_gt,) = ktg_objects(strided, int(strided.areas.argmax()), 840)
    box, gt = list(obj_gt.box), list(obj_gt.point)
    for off, l1_ok in ((12, True), (20, False)):
        obj = {"bbox_2d": box, "point_2d": [gt[0] + off, gt[1] + off]}
        for metric, expect in (("l1", l1_ok), ("euclidean", True)):
            p = make_protocol("rcot", task="ktg", keyframe_size=840, point_metric=metric)
            tr = run(p, strided, [ktg([obj])])
            assert tr.reward["ktg_accuracy"] == (3.0 if expect else 2.0), (off, metric)


def test_oracle_pipeline_answers_b_on_some_traces(target_samples):
    from jaxseg.protocols.scripted import OraclePolicy

    protocol = make_protocol("rcot", video_size=64, keyframe_size=64)
    traces = run_episodes(
        protocol,
        OraclePolicy(protocol, target_samples),
        target_samples,
        backend=make_backend("oracle"),
    )
    answers = [t.action["choice"] for tr in traces for t in tr.turns if t.step == "aks"]
    assert 0.05 < answers.count("B") / len(answers) < 0.5  # where a weak frame exists
    assert all(
        a == t
        for tr in traces
        for a, t in [(x.action["choice"], x.action["truth"]) for x in tr.turns if x.step == "aks"]
    )


def test_fallbacks(strided):
    protocol = make_protocol("rcot")
    tr = run(protocol, strided, [VDG, "garbage", aks("B"), kfg(12), "<answer>maybe</answer>", "x"])
    assert tr.turns[1].action == {"keyframe": 0, "fallback": True}  # first frame
    # kfg names id 12, not a frame of this video: first frame not yet rejected (id 5)
    assert tr.turns[3].parse_status == "bad_frame" and tr.turns[3].action["keyframe"] == 5
    assert tr.turns[4].parse_status == "not_an_option"  # accepted, earns nothing
    assert tr.turns[4].reward["aks"] == 0.0 and tr.turns[5].step == "ktg"
    assert tr.final.fallback and tr.reward["ktg_accuracy"] == 0.0


def test_ktg_thresholds_apply_at_840_px(strided):
    """A box 2 px off at 140 px is 12 px off at 840: box L1 < 10 fails, IoU and point pass."""
    protocol = make_protocol("rcot", keyframe_size=140)
    s = 140 / 64
    box = [20 * s + 2, 24 * s + 2, 36 * s + 2, 40 * s + 2]
    obj = {"bbox_2d": box, "point_2d": [28 * s, 32 * s]}
    tr = run(protocol, strided, [VDG, kfg(25), aks("A"), ktg([obj])])
    assert tr.reward["ktg_accuracy"] == 2.0


def test_aks_ground_truth_threshold(strided):
    assert aks_truth(strided, 5, 0.5) == "A"
    assert aks_truth(strided, 0, 0.5) == "B"
    null = square_sample(present=())
    assert {aks_truth(null, p, 0.5) for p in range(null.num_frames)} == {"B"}
