"""GT geometry: boxes, inscribed-circle points, coordinate maps, presence runs."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from jaxseg.protocols import annotations as ann


def test_box_and_point_of_a_rectangle():
    m = np.zeros((20, 30), bool)
    m[4:11, 6:21] = True  # 7 tall, 15 wide
    assert ann.box_of(m).tolist() == [6, 4, 21, 11]
    x, y = ann.inscribed_point(m)
    assert y == 7.5 and 6 < x < 21  # centre row; any column of the maximal run
    assert ann.box_of(np.zeros((3, 3), bool)) is None
    assert ann.inscribed_point(np.zeros((3, 3), bool)) is None


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_inscribed_point_is_the_deepest_mask_pixel(seed):
    rng = np.random.default_rng(seed)
    m = ndimage.binary_dilation(rng.random((16, 16)) > 0.85, iterations=int(rng.integers(0, 3)))
    if not m.any():
        return
    x, y = ann.inscribed_point(m)
    xi, yi = int(x), int(y)
    assert m[yi, xi]
    depth = ndimage.distance_transform_edt(np.pad(m, 1))[1:-1, 1:-1]
    assert depth[yi, xi] == depth.max()


def test_scaling_round_trip_and_clip():
    boxes = np.array([[1.0, 2.0, 30.0, 40.0]])
    there = ann.scale_boxes(boxes, (64, 128), (140, 140))
    assert there.tolist() == [[1 * 140 / 128, 2 * 140 / 64, 30 * 140 / 128, 40 * 140 / 64]]
    np.testing.assert_allclose(ann.scale_boxes(there, (140, 140), (64, 128)), boxes)
    assert ann.clip_box([-5, -5, 10, 10], (8, 8)).tolist() == [0, 0, 8, 8]
    assert ann.clip_box([9, 9, 20, 20], (8, 8)) is None


def test_presence_run_and_best_position():
    p = [False, True, True, False, True]
    assert ann.presence_run(p, 2) == (1, 3) and ann.presence_run(p, 4) == (4, 5)
    assert ann.presence_run(p, 0) is None and ann.presence_run(p, 9) is None
    assert ann.best_position([0, 5, 9, 9], [0, 3, 2]) == 3  # earliest listed on ties
    with pytest.raises(ValueError):
        ann.best_position([1], [])
