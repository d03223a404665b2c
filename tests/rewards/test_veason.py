import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxseg.rewards import veason
from jaxseg.rewards.veason import VeasonAnswer

from .fuzz import model_text, prefixes

SAMPLED = [0, 6, 12, 18]
AREAS = [0, 50, 200, 100]  # GT mask pixels at the sampled frames
GT_BOXES_12 = [[0, 0, 10, 10], [20, 20, 40, 40]]


def _text(keyframe=12, boxes=GT_BOXES_12):
    payload = json.dumps({"keyframe_timestamp": keyframe, "bbox_2d_list": boxes})
    return f"<think>the car turns left at 12</think>\n<answer>{payload}</answer>"


def test_format_reward_hand_computed():
    assert veason.format_reward(_text()) == 2.0  # structure 1 + two valid boxes 2 * 1/2
    assert veason.format_reward(_text(boxes=[[0, 0, 10, 10], [1, 2, 3]])) == 1.5  # 1 + 1/2
    assert veason.format_reward(_text(boxes=[])) == 1.0  # empty list earns no box credit
    assert veason.format_reward(_text(keyframe="12")) == 1.0  # keyframe must be an int
    # JSON credit does not need the structure (released behaviour): 0 + 1
    assert veason.format_reward(_text().replace("<think>", "")) == 1.0


def test_keyframe_reward_hand_computed():
    assert veason.keyframe_reward(12, SAMPLED, AREAS) == 1.0  # 200 / 200
    assert veason.keyframe_reward(18, SAMPLED, AREAS) == 0.5  # 100 / 200
    assert veason.keyframe_reward(0, SAMPLED, AREAS) == 0.0  # target absent there
    assert veason.keyframe_reward(7, SAMPLED, AREAS) == 0.0  # not a sampled index
    with pytest.raises(ValueError, match="one per sampled id"):
        veason.keyframe_reward(12, SAMPLED, [1, 2])


def test_spatial_reward_hand_computed():
    # pred 0 = gt 1 exactly (IoU 1); pred 1 overlaps gt 0 by 5x10: 50 / 150 = 1/3
    m = veason.spatial_match([[20, 20, 40, 40], [5, 0, 15, 10]], GT_BOXES_12)
    np.testing.assert_allclose(m.reward, (1 + 1 / 3) / 2)
    # a hallucinated third box: (1 + 1) / max(3, 2)
    extra = veason.spatial_match(GT_BOXES_12 + [[50, 50, 60, 60]], GT_BOXES_12)
    np.testing.assert_allclose(extra.reward, 2 / 3)
    assert sorted(extra.pred_index.tolist()) == [0, 1]  # the boxes to propagate
    assert veason.spatial_match([], GT_BOXES_12).reward == 0.0


def _masks():
    gt = np.zeros((4, 8, 8), bool)
    gt[1:, 2:6, 2:6] = True  # frame 0 has no target
    return gt


def test_perfect_answer_reaches_max_and_bad_answers_do_not():
    gt = _masks()
    perfect = veason.veason_reward(
        _text(),
        VeasonAnswer(12, GT_BOXES_12),
        sampled_frame_ids=SAMPLED,
        gt_mask_areas=AREAS,
        gt_boxes_at_keyframe=GT_BOXES_12,
        propagated_masks=gt,
        gt_masks=gt,
    )
    assert perfect.total == veason.MAX_REWARD
    # R_u: frame 0 both empty -> 1; frame 1 empty prediction -> 0; others exact -> 1
    half = gt.copy()
    half[1] = False
    r = veason.veason_reward(
        _text(),
        VeasonAnswer(12, GT_BOXES_12),
        sampled_frame_ids=SAMPLED,
        gt_mask_areas=AREAS,
        gt_boxes_at_keyframe=GT_BOXES_12,
        propagated_masks=half,
        gt_masks=gt,
    )
    assert r.propagation == 0.75
    unparsed = veason.veason_reward(
        "garbage",
        None,
        sampled_frame_ids=SAMPLED,
        gt_mask_areas=AREAS,
        gt_boxes_at_keyframe=GT_BOXES_12,
    )
    assert unparsed.total == 0.0
    off_grid = veason.veason_reward(
        _text(keyframe=7),
        VeasonAnswer(7, GT_BOXES_12),
        sampled_frame_ids=SAMPLED,
        gt_mask_areas=AREAS,
        gt_boxes_at_keyframe=GT_BOXES_12,
        propagated_masks=gt,
        gt_masks=gt,
    )
    assert (off_grid.keyframe, off_grid.spatial, off_grid.propagation) == (0.0, 0.0, 0.0)


@settings(max_examples=200, deadline=None)
@given(model_text)
def test_format_fuzz_in_range(text):
    assert 0.0 <= veason.format_reward(text) <= 2.0


def test_truncated_outputs_never_crash_and_never_score_full():
    full = _text()
    scores = [veason.format_reward(p) for p in prefixes(full)]
    assert scores[-1] == 2.0 and max(scores[:-1]) < 2.0


box = st.tuples(*[st.integers(0, 50)] * 4)


@settings(max_examples=50, deadline=None)
@given(st.lists(box, max_size=4), st.sampled_from(SAMPLED + [3, 99]), st.randoms())
def test_reward_range_and_box_order_invariance(boxes, keyframe, rnd):
    def total(bs):
        return veason.veason_reward(
            _text(keyframe, [list(b) for b in bs]),
            VeasonAnswer(keyframe, bs),
            sampled_frame_ids=SAMPLED,
            gt_mask_areas=AREAS,
            gt_boxes_at_keyframe=GT_BOXES_12,
        ).total

    t = total(boxes)
    assert 0.0 <= t <= veason.MAX_REWARD
    shuffled = list(boxes)
    rnd.shuffle(shuffled)
    np.testing.assert_allclose(total(shuffled), t)
