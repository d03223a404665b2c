import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxseg.rewards import boxes


def test_iou_hand_computed():
    a = [[0, 0, 10, 10]]
    b = [[5, 0, 15, 10], [0, 0, 10, 10], [20, 20, 30, 30], [5, 5, 6, 6]]
    # overlap 5x10 = 50, union 100 + 100 - 50 = 150 -> 1/3 ; identical -> 1 ; disjoint -> 0
    # [5,5,6,6] inside: 1 / 100
    np.testing.assert_allclose(boxes.box_iou_matrix(a, b), [[1 / 3, 1.0, 0.0, 0.01]])
    # +1 convention: areas 11*11 = 121 each, overlap 6*11 = 66, union 176 -> 0.375
    np.testing.assert_allclose(
        boxes.box_iou_matrix(a, [[5, 0, 15, 10]], pixel_inclusive=True), [[66 / 176]]
    )


def test_inverted_and_degenerate_boxes_score_zero():
    assert boxes.box_iou_matrix([[10, 10, 0, 0]], [[0, 0, 10, 10]])[0, 0] == 0.0
    assert boxes.box_iou_matrix([[3, 3, 3, 3]], [[3, 3, 3, 3]])[0, 0] == 0.0


def test_l1_points_inside():
    # |0-1| + |0-2| + |10-13| + |10-14| = 10 over 4 coordinates -> 2.5
    np.testing.assert_allclose(boxes.box_l1_matrix([[0, 0, 10, 10]], [[1, 2, 13, 14]]), [[2.5]])
    np.testing.assert_allclose(boxes.point_distance_matrix([[0, 0]], [[3, 4]]), [[5.0]])
    np.testing.assert_array_equal(
        boxes.points_in_boxes([[5, 5], [11, 5]], [[0, 0, 10, 10], [0, 0, 10, 10]]), [True, False]
    )


def test_hungarian_picks_the_best_assignment():
    # greedy row-wise would take (0,0)=0.9 then (1,1)=0.1 -> 1.0; optimum 0.8 + 0.7 = 1.5
    score = np.array([[0.9, 0.8], [0.7, 0.1]])
    m = boxes.hungarian_reward(score)
    np.testing.assert_allclose(m.reward, 1.5 / 2)
    assert sorted(zip(m.pred_index.tolist(), m.gt_index.tolist())) == [(0, 1), (1, 0)]
    # an extra prediction is penalised by the denominator max(3, 2)
    np.testing.assert_allclose(boxes.hungarian_reward(np.vstack([score, [0.0, 0.0]])).reward, 0.5)


def test_hungarian_empty_cases():
    assert boxes.hungarian_reward(np.zeros((0, 3))).reward == 0.0
    assert boxes.hungarian_reward(np.zeros((0, 0)), empty_value=1.0).reward == 1.0


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match=r"pred boxes must be \[N, 4\]"):
        boxes.box_iou_matrix([[1, 2, 3]], [[0, 0, 1, 1]])
    with pytest.raises(ValueError, match="non-finite"):
        boxes.as_boxes([[0, 0, np.inf, 1]])


coord = st.integers(0, 100)
box = st.tuples(coord, coord, coord, coord).map(
    lambda b: (min(b[0], b[2]), min(b[1], b[3]), max(b[0], b[2]), max(b[1], b[3]))
)


@settings(max_examples=60, deadline=None)
@given(st.lists(box, max_size=5), st.lists(box, min_size=1, max_size=5), st.randoms())
def test_iou_range_and_permutation_invariance(pred, gt, rnd):
    iou = boxes.box_iou_matrix(pred, gt)
    assert iou.shape == (len(pred), len(gt))
    assert ((iou >= 0) & (iou <= 1)).all()
    r = boxes.hungarian_reward(iou).reward
    assert 0 <= r <= 1
    pred_p, gt_p = list(pred), list(gt)
    rnd.shuffle(pred_p)
    rnd.shuffle(gt_p)
    np.testing.assert_allclose(boxes.hungarian_reward(boxes.box_iou_matrix(pred_p, gt_p)).reward, r)
