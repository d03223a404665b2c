import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxseg.rewards import revseg

from .fuzz import model_text

ROUND1 = "<think>a family car</think><answer>frame id: 2 ; object description: the silver minivan</answer>"
ROUND2 = "<think>it is on the left</think><answer>[0, 0, 10, 10]</answer>"
AREAS = [0, 50, 100, 25]  # GT box area per frame
GT_AT_2 = [[5, 0, 15, 10], [0, 0, 10, 10]]


def test_format_hand_computed():
    assert revseg.format_reward([ROUND1, ROUND2]) == 1.0
    assert revseg.format_reward([ROUND1]) == 0.5  # round 2 missing
    qwen_style = '<think>x</think><answer>[{"bbox_2d": [0, 0, 10, 10], "label": "van"}]</answer>'
    assert revseg.format_reward([ROUND1, qwen_style]) == 1.0
    no_desc = ROUND1.replace("the silver minivan", "")
    assert revseg.format_reward([no_desc, ROUND2]) == 0.5
    assert revseg.format_reward([ROUND1, "<think>x</think><answer>[1, 2]</answer>"]) == 0.5


def test_terms_and_combinations():
    assert revseg.keyframe_reward(1, AREAS) == 0.5  # 50 / 100
    assert revseg.keyframe_reward(2, AREAS) == 1.0
    assert revseg.keyframe_reward(9, AREAS) == 0.0
    assert revseg.spatial_reward([0, 0, 10, 10], GT_AT_2) == 1.0  # best of 1/3 and 1
    kwargs = dict(gt_box_areas=AREAS, gt_boxes_at_keyframe=[[5, 0, 15, 10]])
    # r_f 1, r_t 1, r_s 50/150 = 1/3
    p = revseg.revseg_reward([ROUND1, ROUND2], keyframe=2, pred_box=[0, 0, 10, 10], **kwargs)
    np.testing.assert_allclose(p, 1 / 3)
    s = revseg.revseg_reward(
        [ROUND1, ROUND2], keyframe=2, pred_box=[0, 0, 10, 10], combine="sum", **kwargs
    )
    np.testing.assert_allclose(s, 2 + 1 / 3)
    assert revseg.revseg_reward([ROUND1], keyframe=None, pred_box=None, **kwargs) == 0.0
    with pytest.raises(ValueError, match="combine"):
        revseg.revseg_reward([], keyframe=None, pred_box=None, combine="max", **kwargs)


def test_perfect_answer_reaches_max():
    r = revseg.revseg_reward(
        [ROUND1, ROUND2],
        keyframe=2,
        pred_box=[0, 0, 10, 10],
        gt_box_areas=AREAS,
        gt_boxes_at_keyframe=[[0, 0, 10, 10]],
    )
    assert r == 1.0


@settings(max_examples=150, deadline=None)
@given(st.lists(model_text, max_size=3))
def test_format_fuzz_in_range(turns):
    assert revseg.format_reward(turns) in (0.0, 0.5, 1.0)


def test_spatial_reward_multi_object_modes():
    """One box on one of two targets: full marks against the best box, partial against the
    box enclosing both."""
    gt = [[0, 0, 10, 10], [20, 0, 30, 10]]
    assert revseg.spatial_reward([0, 0, 10, 10], gt) == 1.0
    assert revseg.spatial_reward([0, 0, 10, 10], gt, "union") == pytest.approx(100 / 300)
    assert revseg.spatial_reward([0, 0, 30, 10], gt, "union") == 1.0
