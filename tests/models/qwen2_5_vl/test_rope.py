"""get_rope_index against transformers (exact), M-RoPE / vision RoPE tables against torch."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxseg.models.qwen2_5_vl import Qwen2_5_VLConfig, get_rope_index
from jaxseg.models.qwen2_5_vl.rope import inverse_frequencies, text_rope_cos_sin

from .conftest import IMAGE_TOKEN, VIDEO_TOKEN, media_tokens, tiny_hf_config


@pytest.fixture(scope="module")
def configs():
    hf = tiny_hf_config()
    return hf, Qwen2_5_VLConfig.from_hf_dict(hf.to_dict())


def hf_rope_index(hf_cfg, ids, image_grid_thw=None, video_grid_thw=None, seconds=None, mask=None):
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLModel

    class Holder:  # get_rope_index only reads self.config and self.get_vision_position_ids
        config = hf_cfg
        get_vision_position_ids = Qwen2_5_VLModel.get_vision_position_ids

    ids_t = torch.tensor(ids)
    types = (ids_t == IMAGE_TOKEN).int() + 2 * (ids_t == VIDEO_TOKEN).int()
    t = lambda x: None if x is None else torch.tensor(np.asarray(x))
    pos, deltas = Qwen2_5_VLModel.get_rope_index(
        Holder(),
        ids_t,
        mm_token_type_ids=types,
        image_grid_thw=t(image_grid_thw),
        video_grid_thw=t(video_grid_thw),
        second_per_grid_ts=None if seconds is None else torch.tensor(seconds, dtype=torch.float32),
        attention_mask=t(mask),
    )
    return pos.numpy(), deltas.numpy()


GRID_A, GRID_B, GRID_V = [1, 10, 14], [1, 6, 8], [3, 8, 12]
CASES = {
    "text": ([[5, 6, 7, 8, 9]], None, None, None, None),
    "one_image": (
        [[1, 2] + media_tokens(GRID_A, IMAGE_TOKEN) + [3, 4]],
        [GRID_A],
        None,
        None,
        None,
    ),
    "two_images": (
        [[1] + media_tokens(GRID_A, IMAGE_TOKEN) + [7] + media_tokens(GRID_B, IMAGE_TOKEN) + [4]],
        [GRID_A, GRID_B],
        None,
        None,
        None,
    ),
    # 0.75 s per grid * 2 tokens/s = 1.5 -> t ids 0, 1, 3 (float then truncated)
    "video_fractional": (
        [[1] + media_tokens(GRID_V, VIDEO_TOKEN) + [3, 4, 5]],
        None,
        [GRID_V],
        [0.75],
        None,
    ),
    # t ids 0, 8, 16 exceed the spatial extent: text after the video follows transformers 5.
    "video_long_interval": (
        [[1] + media_tokens(GRID_V, VIDEO_TOKEN) + [3]],
        None,
        [GRID_V],
        [4.0],
        None,
    ),
    "video_default_seconds": (
        [[1] + media_tokens(GRID_V, VIDEO_TOKEN) + [3]],
        None,
        [GRID_V],
        None,
        None,
    ),
    "image_and_video": (
        [[1] + media_tokens(GRID_B, IMAGE_TOKEN) + [2] + media_tokens(GRID_V, VIDEO_TOKEN) + [3]],
        [GRID_B],
        [GRID_V],
        [1.0],
        None,
    ),
}


def _left_padded_batch():
    row0 = [1] + media_tokens(GRID_A, IMAGE_TOKEN) + [5, 6]
    row1 = [1, 2, 3] + media_tokens(GRID_B, IMAGE_TOKEN) + [7]
    length = max(len(row0), len(row1))
    ids = np.zeros((2, length), np.int64)
    mask = np.zeros((2, length), np.int64)
    for r, row in enumerate([row0, row1]):
        ids[r, length - len(row) :] = row
        mask[r, length - len(row) :] = 1
    return ids, mask


@pytest.mark.parametrize("case", sorted(CASES))
def test_get_rope_index_matches_transformers(configs, case):
    hf_cfg, cfg = configs
    ids, images, videos, seconds, mask = CASES[case]
    ids = np.asarray(ids)
    ref_pos, ref_deltas = hf_rope_index(hf_cfg, ids, images, videos, seconds, mask)
    pos, deltas = get_rope_index(ids, images, videos, seconds, mask, config=cfg)
    np.testing.assert_array_equal(pos, ref_pos)
    np.testing.assert_array_equal(deltas, ref_deltas)


def test_get_rope_index_left_padding_matches_transformers(configs):
    hf_cfg, cfg = configs
    ids, mask = _left_padded_batch()
    grids = [GRID_A, GRID_B]
    ref_pos, ref_deltas = hf_rope_index(hf_cfg, ids, grids, None, None, mask)
    pos, deltas = get_rope_index(ids, grids, None, None, mask, config=cfg)
    np.testing.assert_array_equal(pos, ref_pos)
    np.testing.assert_array_equal(deltas, ref_deltas)


def test_placeholder_count_mismatch_is_an_error(configs):
    _, cfg = configs
    ids = np.asarray([[1] + media_tokens(GRID_A, IMAGE_TOKEN)[:-3] + [2]])
    with pytest.raises(ValueError, match="placeholder tokens"):
        get_rope_index(ids, [GRID_A], config=cfg)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=30))
def test_text_only_positions_are_cumsum_of_mask(configs, valid):
    _, cfg = configs
    mask = np.asarray([valid], np.int64)
    if mask.sum() == 0:
        mask[0, -1] = 1
    ids = np.full_like(mask, 5)
    pos, deltas = get_rope_index(ids, attention_mask=mask, config=cfg)
    expect = np.where(mask[0] == 1, np.cumsum(mask[0]) - 1, 0)
    for row in range(3):
        np.testing.assert_array_equal(pos[row, 0], expect)
    assert deltas[0, 0] == 0


@pytest.mark.parametrize("dim,theta", [(16, 1e4), (128, 1e6), (40, 1e4), (80, 1e4)])
def test_inverse_frequencies_match_torch(dim, theta):
    # torch's vectorised float32 pow is not bit-reproducible in numpy; 1 ulp is the bound.
    ref = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float) / dim))
    np.testing.assert_array_max_ulp(inverse_frequencies(dim, theta), ref.numpy(), maxulp=1)


def test_text_rope_matches_transformers(configs):
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLRotaryEmbedding

    hf_cfg, cfg = configs
    rng = np.random.default_rng(0)
    pos = rng.integers(0, 500, (3, 2, 7))
    rot = Qwen2_5_VLRotaryEmbedding(hf_cfg.text_config)
    cos_ref, sin_ref = rot(torch.zeros(1, dtype=torch.float32), torch.tensor(pos))
    t = cfg.text
    cos, sin = text_rope_cos_sin(
        jnp.asarray(pos), t.head_dim, t.rope_theta, t.mrope_section, jnp.float32
    )
    np.testing.assert_allclose(np.asarray(cos), cos_ref.numpy(), atol=1e-6)
    np.testing.assert_allclose(np.asarray(sin), sin_ref.numpy(), atol=1e-6)


def test_text_can_resume_after_the_largest_media_position(configs):
    """transformers 4.x / original Qwen2.5-VL rule: text after a video starts at max + 1."""
    _, cfg = configs
    ids = np.asarray([[1] + media_tokens(GRID_V, VIDEO_TOKEN) + [3, 4]])
    pos, deltas = get_rope_index(
        ids, None, [GRID_V], [4.0], config=cfg, text_resumes_at="max_position"
    )
    n_media = len(media_tokens(GRID_V, VIDEO_TOKEN))
    video = pos[:, 0, 2:n_media]
    assert video[0].max() == 2 + 2 * 4 * 2  # t ids 0, 8, 16 after 2 text tokens
    np.testing.assert_array_equal(
        pos[:, 0, -2:], np.full((3, 2), [video.max() + 2, video.max() + 3])
    )
    assert deltas[0, 0] == pos.max() + 1 - ids.shape[1]
    # the transformers-5 rule resumes <|vision_end|> at 2 + max(8, 12) // 2 instead
    pos5, _ = get_rope_index(ids, None, [GRID_V], [4.0], config=cfg)
    assert pos5[0, 0, -2] == 2 + 6 + 1
