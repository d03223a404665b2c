"""Frame samplers: Veason-R1's uniform (eval) and keyframe-centred (training) rules."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxseg.data.sampling import keyframe_centred_positions, top_k_area_frames, uniform_positions


def test_uniform_is_floor_linspace_with_both_ends():
    np.testing.assert_array_equal(uniform_positions(10, 4), [0, 3, 6, 9])
    np.testing.assert_array_equal(uniform_positions(100, 8), [0, 14, 28, 42, 56, 70, 84, 99])
    np.testing.assert_array_equal(uniform_positions(3, 8), [0, 1, 2])  # short video: all frames
    with pytest.raises(ValueError, match="empty video"):
        uniform_positions(0, 4)


def test_top_k_is_stable_on_ties():
    np.testing.assert_array_equal(top_k_area_frames([3, 9, 9, 1, 9, 0, 9], k=3), [1, 2, 4])


def test_keyframe_hand_case():
    # L=10, N=6: stride ceil(10/5)=2; keyframe 7 (the single largest area) -> 1,3,5,7,9
    areas = np.zeros(10)
    areas[7] = 100
    rng = np.random.default_rng(0)
    positions, k = keyframe_centred_positions(areas, 6, rng, top_k=1)
    assert k == 7
    np.testing.assert_array_equal(positions, [1, 3, 5, 7, 9])
    positions, k = keyframe_centred_positions(areas, 1, rng, top_k=1)
    np.testing.assert_array_equal(positions, [7])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 50), min_size=1, max_size=60),
    st.integers(2, 12),
    st.integers(0, 2**31),
)
def test_keyframe_properties(areas, n, seed):
    areas = np.asarray(areas)
    positions, k = keyframe_centred_positions(areas, n, np.random.default_rng(seed))
    assert k in positions
    assert k in top_k_area_frames(areas, 5)
    assert areas[k] >= np.sort(areas)[-min(5, len(areas))]  # among the 5 largest areas
    stride = math.ceil(len(areas) / (n - 1))
    assert np.all(np.diff(positions) == stride) and positions[0] == k % stride
    assert 1 <= len(positions) <= n - 1 and positions[-1] < len(areas)
    again, k2 = keyframe_centred_positions(areas, n, np.random.default_rng(seed))
    assert k2 == k and np.array_equal(again, positions)


def test_keyframe_draws_every_top_candidate():
    areas = np.array([5, 1, 4, 9, 2, 8, 7, 3])
    seen = {keyframe_centred_positions(areas, 4, np.random.default_rng(s))[1] for s in range(200)}
    assert seen == {0, 2, 3, 5, 6}  # the five largest
