import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxseg.rewards import o3

from .fuzz import model_text

THINK = "Step 1: the clip shows a race. Step 2: the red car. Step 3: 'winner'. Action: confirmed"
VTG = '<VTG>{"start": 2, "end": 6, "keyframe": 4}</VTG>'
ANSWER = f"<think>{THINK}</think>\n<answer>{VTG}, <RefSeg>[SEG]</RefSeg></answer>"
SELECT = f"<think>{THINK}</think><select>{VTG}, <RefSeg>[SEG]</RefSeg></select>"
PRESENCE = np.array([0, 0, 1, 1, 1, 1, 0, 0, 0, 0], bool)  # present on frames 2..5


def test_strict_format():
    assert o3.strict_format_reward([ANSWER]) == 1.0
    assert o3.strict_format_reward([SELECT, ANSWER]) == 1.0
    assert o3.strict_format_reward([ANSWER.replace("[SEG]", "")]) == -1.0
    assert o3.strict_format_reward([ANSWER.replace('"keyframe": 4', '"kf": 4')]) == -1.0
    assert o3.strict_format_reward([SELECT, "<answer>x</answer>"]) == -1.0
    assert o3.strict_format_reward([]) == -1.0
    # released code accepts an answer followed by a select; the stricter flag does not
    assert o3.strict_format_reward([ANSWER, SELECT]) == 1.0
    assert o3.strict_format_reward([ANSWER, SELECT], require_answer_last=True) == -1.0
    assert o3.strict_format_reward([SELECT, ANSWER], require_answer_last=True) == 1.0


def test_step_format():
    two_of_four = "<think>step 1 ... ACTION: see new segment</think><select>x</select>"
    assert o3.step_format_reward([ANSWER]) == 1.0
    assert o3.step_format_reward([ANSWER, two_of_four]) == 0.75  # (1 + 2/4) / 2
    assert o3.step_format_reward(["no think tag"]) == 0.0


@pytest.mark.parametrize(
    ("interval", "released", "iou"),
    [
        # [2, 6): 4 present / 4 long = 1 -> 0.5 ; IoU 4 / 4 = 1 -> 0.5
        ((2, 6), 0.5, 0.5),
        # [0, 8): precision 4 / 8 = 0.5 -> 0.25 ; IoU 4 / 8 -> 0.25
        ((0, 8), 0.25, 0.25),
        # [2, 4): precision 2 / 2 = 1 -> 0.5 ; IoU 2 / 4 = 0.5 -> 0.25 (precision ignores misses)
        ((2, 4), 0.5, 0.25),
        # [3, 4): precision 1 -> 0.5 ; IoU 1 / 4 < 0.5 -> -0.5
        ((3, 4), 0.5, -0.5),
        # [0, 10): 4 / 10 < 0.5 -> -0.5 both
        ((0, 10), -0.5, -0.5),
        # [3, 20) clamps to [3, 10): 3 / 7 < 0.5 -> -0.5
        ((3, 20), -0.5, -0.5),
        ((5, 5), -0.5, -0.5),  # empty interval
        (None, -0.5, -0.5),  # unparseable VTG
    ],
)
def test_temporal_hand_computed(interval, released, iou):
    np.testing.assert_allclose(o3.temporal_reward(interval, PRESENCE), released)
    np.testing.assert_allclose(o3.temporal_reward(interval, PRESENCE, mode="iou"), iou)


def test_temporal_absent_object_and_errors():
    assert o3.temporal_reward((0, 3), np.zeros(10, bool)) == 0.5  # ratio 1 by convention
    with pytest.raises(ValueError, match="mode"):
        o3.temporal_reward((0, 3), PRESENCE, mode="giou")


def test_keyframe_presence():
    assert o3.keyframe_reward(4, PRESENCE) == 1.0
    assert [o3.keyframe_reward(k, PRESENCE) for k in (8, None, 12, -1)] == [-1.0] * 4


def test_mask_reward_piecewise():
    # scores: 0.9 -> min(1.5, 1.5) = 1.5 ; 0.5 -> 0.3 ; 0.3 -> 0 ; 0.1 -> -1 ; mean 0.8 / 4
    np.testing.assert_allclose(o3.mask_reward_from_ious([0.9, 0.5, 0.3, 0.1]), 0.2)
    assert o3.mask_reward_from_ious([1.0]) == 1.5
    assert o3.mask_reward_from_ious([]) == -1.0
    gt = np.zeros((2, 4, 4), bool)
    gt[:, :2] = True
    assert o3.mask_reward(gt, gt) == 1.5


@pytest.mark.parametrize(
    ("ious", "intended", "shipped"),
    [
        ([0.3, 0.4, 0.6], 1.5, 0.5),  # delta 0.2: min(10 * 0.15, 2) = 1.5 ; bug caps at 0.5
        ([0.1, 0.9], 2.0, 0.5),  # delta 0.8: capped at 2
        ([0.2, 0.27], 0.5, 0.5),  # delta 0.07 in (0.05, 0.1]
        ([0.5, 0.53], 0.0, 0.0),  # |delta| <= 0.05
        ([0.3, 0.5, 0.42], -1.0, -1.0),  # 0.42 - best earlier 0.5 = -0.08
        ([0.7], 0.0, 0.0),  # one turn: no progression to judge
    ],
)
def test_progressive(ious, intended, shipped):
    np.testing.assert_allclose(o3.progressive_reward_from_ious(ious), intended)
    np.testing.assert_allclose(o3.progressive_reward_from_ious(ious, shipped=True), shipped)


def test_progressive_from_masks():
    gt = np.zeros((4, 4), bool)
    gt[:2, :2] = True
    worse = np.zeros((4, 4), bool)
    worse[0, 0] = True  # IoU 1/4
    assert o3.progressive_reward([worse, gt], [gt, gt]) == 2.0  # delta 0.75 -> cap 2


@pytest.mark.parametrize(
    ("kf", "video", "intended", "shipped"),
    [
        ([0.4, 0.9], 0.5, 1.5, 0.5),  # delta 0.4: min(5 * 0.3, 2) = 1.5
        ([0.4, 0.65], 0.5, 0.5, 0.5),  # delta 0.15
        ([0.4, 0.5], 0.5, 0.0, 0.0),  # delta 0
        ([0.4, 0.4], 0.5, -1.0, -1.0),  # delta -0.1
        ([0.9], 0.1, 0.0, 0.0),  # one turn
    ],
)
def test_keyframe_vs_mask(kf, video, intended, shipped):
    np.testing.assert_allclose(o3.keyframe_vs_mask_reward(kf, video), intended)
    np.testing.assert_allclose(o3.keyframe_vs_mask_reward(kf, video, shipped=True), shipped)


def test_total_of_a_good_two_turn_rollout():
    r = o3.o3_reward(
        [SELECT, ANSWER],
        interval=(2, 6),
        keyframe=4,
        presence=PRESENCE,
        frame_ious=[0.9, 0.9],
        keyframe_ious=[0.5, 0.95],
    )
    # 1 + 1 + 0.5 + 1 + 1.5 + min(10 * 0.4, 2) = 2 + keyframe-vs-mask delta 0.05 -> 0
    np.testing.assert_allclose(r.total, 7.0)
    shipped = o3.o3_reward(
        [SELECT, ANSWER],
        interval=(2, 6),
        keyframe=4,
        presence=PRESENCE,
        frame_ious=[0.9, 0.9],
        keyframe_ious=[0.5, 0.95],
        shipped=True,
    )
    np.testing.assert_allclose(shipped.total, 5.5)  # progressive capped at 0.5


@settings(max_examples=150, deadline=None)
@given(st.lists(model_text, max_size=3))
def test_format_fuzz_in_range(turns):
    assert o3.strict_format_reward(turns) in (-1.0, 1.0)
    assert 0.0 <= o3.step_format_reward(turns) <= 1.0


unit = st.floats(0.0, 1.0)


@settings(max_examples=100, deadline=None)
@given(
    st.one_of(st.none(), st.tuples(st.integers(-5, 15), st.integers(-5, 15))),
    st.one_of(st.none(), st.integers(-3, 12)),
    st.lists(unit, max_size=5),
    st.lists(unit, min_size=1, max_size=4),
    st.booleans(),
)
def test_total_within_documented_bounds(interval, keyframe, frame_ious, kf_ious, shipped):
    r = o3.o3_reward(
        [ANSWER],
        interval=interval,
        keyframe=keyframe,
        presence=PRESENCE,
        frame_ious=frame_ious,
        keyframe_ious=kf_ious,
        shipped=shipped,
        temporal_mode="iou",
    )
    high = o3.MAX_REWARD_SHIPPED if shipped else o3.MAX_REWARD_INTENDED
    assert o3.MIN_REWARD <= r.total <= high


def test_each_term_reaches_its_documented_maximum():
    # per-term maxima: strict 1, step 1, temporal 0.5, keyframe 1, mask 1.5, R_p 2 + 2
    assert o3.strict_format_reward([ANSWER]) == 1.0
    assert o3.step_format_reward([ANSWER]) == 1.0
    assert o3.temporal_reward((2, 6), PRESENCE, mode="iou") == 0.5
    assert o3.keyframe_reward(2, PRESENCE) == 1.0
    assert o3.mask_reward_from_ious([0.95, 1.0]) == 1.5
    assert o3.progressive_reward_from_ious([0.2, 0.6]) == 2.0  # min(10 * 0.35, 2)
    assert o3.keyframe_vs_mask_reward([0.4, 1.0], 0.4) == 2.0  # min(5 * 0.5, 2)


def test_from_masks_matches_from_ious():
    rng = np.random.default_rng(0)
    pred, gt = rng.random((2, 3, 6, 6)) > 0.5
    kf_pred, kf_gt = rng.random((2, 2, 6, 6)) > 0.4
    common = dict(interval=(2, 6), keyframe=4, presence=PRESENCE)
    from_masks = o3.o3_reward_from_masks(
        [SELECT, ANSWER],
        pred_masks=pred,
        gt_masks=gt,
        pred_keyframe_masks=list(kf_pred),
        gt_keyframe_masks=list(kf_gt),
        **common,
    )
    ious = [(p & g).sum() / (p | g).sum() for p, g in zip(pred, gt)]
    kf_ious = [(p & g).sum() / (p | g).sum() for p, g in zip(kf_pred, kf_gt)]
    from_ious = o3.o3_reward([SELECT, ANSWER], frame_ious=ious, keyframe_ious=kf_ious, **common)
    np.testing.assert_allclose(from_masks.total, from_ious.total)


def test_truncated_turns_fail_format_without_crashing():
    from .fuzz import prefixes

    assert all(o3.strict_format_reward([p]) == -1.0 for p in prefixes(ANSWER)[:-1])
    assert all(0.0 <= o3.step_format_reward([p]) <= 1.0 for p in prefixes(ANSWER))
