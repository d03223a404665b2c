import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxseg.rewards import rcot
from jaxseg.rewards.rcot import RCoTObject

from .fuzz import model_text

GT = [RCoTObject([100, 100, 200, 200], [150, 150])]


def test_aks_hand_computed():
    text = "<think>the dog is visible</think><answer>A</answer>"
    assert rcot.aks_format_reward(text) == 1.0
    assert rcot.aks_reward(text, "A", "A") == 3.0  # 1 * 1 + 2 * 1
    assert rcot.aks_reward(text, "A", "B") == 1.0  # format only
    assert rcot.aks_format_reward("<think>x</think><answer> C </answer>") == 0.0
    assert rcot.aks_format_reward("<think>x</think><answer>A or B</answer>") == 0.0
    with pytest.raises(ValueError, match="gt_choice"):
        rcot.aks_accuracy_reward("A", "C")


def test_ktg_score_hand_computed():
    # pred box [102,100,200,204]: area 98*104 = 10192, gt 10000, inter 98*100 = 9800,
    # IoU = 9800 / 10392 = 0.943 > 0.5 -> 1 ; L1 = (2 + 0 + 0 + 4) / 4 = 1.5 < 10 -> 1 ;
    # point (160,150) is 10 px from (150,150) and inside the pred box -> 1 ; S = 3
    good = RCoTObject([102, 100, 200, 204], [160, 150])
    np.testing.assert_array_equal(rcot.ktg_score_matrix([good], GT), [[3.0]])
    # point 11 px from the GT point but outside its own box -> the point term fails
    gt2 = [RCoTObject([100, 100, 200, 200], [190, 150])]
    out = RCoTObject([100, 100, 200, 200], [201, 150])
    np.testing.assert_array_equal(rcot.ktg_score_matrix([out], gt2), [[2.0]])
    # box shifted by 30: IoU = 70*100 / (2*10000 - 7000) = 0.538 > 0.5 but L1 = 15 -> S = 1
    shifted = RCoTObject([130, 100, 230, 200], [300, 300])
    np.testing.assert_array_equal(rcot.ktg_score_matrix([shifted], GT), [[1.0]])


def test_ktg_accuracy_and_perfect_answer():
    gt = GT + [RCoTObject([300, 300, 400, 380], [350, 340])]
    assert rcot.ktg_accuracy_reward(gt, gt) == 3.0
    assert rcot.ktg_accuracy_reward(gt[:1], gt) == 1.5  # 3 / max(1, 2)
    assert rcot.ktg_accuracy_reward([], gt) == 0.0
    items = [{"bbox_2d": list(o.box), "point_2d": list(o.point)} for o in gt]
    text = f"<think>two cups</think><answer>{json.dumps(items)}</answer>"
    assert rcot.ktg_format_reward(text) == 3.0
    assert rcot.ktg_reward(text, gt, gt) == rcot.KTG_MAX
    with pytest.raises(ValueError, match="zero-target"):
        rcot.ktg_accuracy_reward(gt, [])


def test_ktg_format_partial():
    # 1 (structure) + 2/2 boxes + 1/2 points = 2.5
    items = [{"bbox_2d": [1, 2, 3, 4], "point_2d": [2, 3]}, {"bbox_2d": [1, 2, 3, 4]}]
    text = f"<think>x</think><answer>{json.dumps(items)}</answer>"
    assert rcot.ktg_format_reward(text) == 2.5
    assert rcot.ktg_format_reward("<think>x</think><answer>[1, 2]</answer>") == 1.0


@settings(max_examples=200, deadline=None)
@given(model_text)
def test_format_fuzz_in_range(text):
    assert 0.0 <= rcot.ktg_format_reward(text) <= 3.0
    assert rcot.aks_format_reward(text) in (0.0, 1.0)


obj = st.tuples(st.integers(0, 400), st.integers(0, 400), st.integers(1, 200), st.integers(1, 200))


@settings(max_examples=50, deadline=None)
@given(st.lists(obj, max_size=4), st.randoms())
def test_accuracy_range_and_permutation_invariance(raw, rnd):
    pred = [RCoTObject([x, y, x + w, y + h], [x + w / 2, y + h / 2]) for x, y, w, h in raw]
    gt = GT + [RCoTObject([10, 10, 60, 90], [30, 50])]
    r = rcot.ktg_accuracy_reward(pred, gt)
    assert 0.0 <= r <= 3.0
    rnd.shuffle(pred)
    np.testing.assert_allclose(rcot.ktg_accuracy_reward(pred, gt), r)
