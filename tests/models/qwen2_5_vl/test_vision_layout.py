"""Host-side window / segment / rotary ids against transformers' vision_utils (exact)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxseg.models.qwen2_5_vl import Qwen2_5_VLConfig, vision_layout
from jaxseg.models.qwen2_5_vl.vision_layout import window_index_and_cu_seqlens
from jaxseg.models.vision_layout import PAD_SEGMENT, rotary_position_ids

from .conftest import tiny_hf_config

GRIDS = [
    [[1, 10, 14]],  # merged 5x7: not a multiple of the 4x4 window
    [[1, 16, 16]],  # merged 8x8: a multiple (transformers still pads a whole empty window)
    [[3, 8, 12], [1, 6, 8]],  # video with t > 1, then an image
    [[2, 2, 2]],  # smaller than one window
]


@pytest.fixture(scope="module")
def vcfg():
    return Qwen2_5_VLConfig.from_hf_dict(tiny_hf_config().to_dict()).vision


@pytest.mark.parametrize("grid", GRIDS, ids=str)
def test_window_index_and_cu_seqlens_match_transformers(vcfg, grid):
    from transformers.vision_utils import get_vision_window_index

    ref_index, ref_cu = get_vision_window_index(
        torch.tensor(grid), vcfg.spatial_merge_size, vcfg.window_size, vcfg.patch_size
    )
    index, cu = window_index_and_cu_seqlens(np.asarray(grid), vcfg)
    np.testing.assert_array_equal(index, ref_index.numpy())
    np.testing.assert_array_equal(cu, ref_cu.numpy())


@pytest.mark.parametrize("grid", GRIDS, ids=str)
def test_rotary_ids_match_transformers(vcfg, grid):
    from transformers.vision_utils import get_vision_position_ids

    ref = get_vision_position_ids(torch.tensor(grid), vcfg.spatial_merge_size)
    np.testing.assert_array_equal(rotary_position_ids(np.asarray(grid), 2), ref.numpy())


@pytest.mark.parametrize("grid", GRIDS, ids=str)
def test_segments_equal_cu_seqlens_boundaries(vcfg, grid):
    """Segment ids reproduce transformers' cu_seqlens chunks on the permuted sequence."""
    from transformers.vision_utils import get_vision_cu_seqlens, get_vision_window_index

    _, cu_win = get_vision_window_index(torch.tensor(grid), 2, vcfg.window_size, vcfg.patch_size)
    cu_full = get_vision_cu_seqlens(torch.tensor(grid))
    layout = vision_layout(np.asarray(grid), vcfg)
    for segs, cu in [(layout.window_segment_ids, cu_win), (layout.full_segment_ids, cu_full)]:
        lengths = np.diff(cu.numpy())
        np.testing.assert_array_equal(segs, np.repeat(np.arange(len(lengths)), lengths))


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(1, 3), st.integers(1, 9), st.integers(1, 9)), min_size=1, max_size=3
    ),
    st.integers(0, 3),
)
def test_layout_is_a_permutation_with_padding(vcfg, items, extra_units):
    grid = np.asarray([[t, 2 * h, 2 * w] for t, h, w in items])
    n = int(np.prod(grid, axis=1).sum())
    layout = vision_layout(grid, vcfg, pad_to=n + 4 * extra_units)
    m_pad = (n + 4 * extra_units) // 4
    assert sorted(layout.window_index.tolist()) == list(range(m_pad))
    np.testing.assert_array_equal(layout.window_index[layout.reverse_index], np.arange(m_pad))
    assert (layout.window_segment_ids[n:] == PAD_SEGMENT).all()
    assert (layout.full_segment_ids[:n] >= 0).all() and (layout.window_segment_ids[:n] >= 0).all()
    # A window never crosses a temporal slice.
    for seg in np.unique(layout.window_segment_ids[:n]):
        assert (
            len(np.unique(layout.full_segment_ids[:n][layout.window_segment_ids[:n] == seg])) == 1
        )


def test_bad_grid_is_rejected(vcfg):
    with pytest.raises(ValueError, match="multiples of spatial_merge_size"):
        vision_layout(np.asarray([[1, 5, 4]]), vcfg)
    with pytest.raises(ValueError, match="pad_to"):
        vision_layout(np.asarray([[1, 4, 4]]), vcfg, pad_to=10)
