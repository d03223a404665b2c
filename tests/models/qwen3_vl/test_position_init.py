"""The sine-cosine start for Qwen3-VL's learned vision position table."""

from __future__ import annotations

import numpy as np
import pytest
from flax import nnx

from jaxseg.models.family import get_family
from jaxseg.models.qwen3_vl.vision import sincos_position_table

from .conftest import IDS, VOCAB


def test_table_is_row_major_and_smooth():
    side, dim = 8, 64
    table = sincos_position_table(side, dim)
    assert table.shape == (side * side, dim)
    q = dim // 4
    rows = table.reshape(side, side, dim)
    # the first half codes the column (w) only, the second half the row (h) only
    assert np.allclose(rows[0, :, : 2 * q], rows[5, :, : 2 * q])
    assert np.allclose(rows[:, 0, 2 * q :], rows[:, 7, 2 * q :])
    assert not np.allclose(rows[0, 0], rows[0, 1])
    # neighbours are closer than far cells; every code has the same norm
    dist = lambda a, b: np.linalg.norm(table[a] - table[b])  # noqa: E731
    assert dist(0, 1) < dist(0, 7) and dist(0, 8) < dist(0, 56)
    assert np.allclose(np.linalg.norm(table, axis=1), np.sqrt(dim / 2))
    with pytest.raises(ValueError, match="multiple of 4"):
        sincos_position_table(8, 66)


def test_init_sets_the_models_table_and_rejects_unknown_schemes():
    family = get_family("qwen3_vl")
    model = family.build(family.preset("nano", vocab_size=VOCAB, **IDS), rngs=nnx.Rngs(0))
    before = np.asarray(model.visual.pos_embed[...])
    family.init_position_table(model, "normal")
    assert np.array_equal(np.asarray(model.visual.pos_embed[...]), before)
    family.init_position_table(model, "sincos2d")
    side = int(round(model.config.vision.num_position_embeddings**0.5))
    want = sincos_position_table(side, model.config.vision.hidden_size)
    assert np.allclose(np.asarray(model.visual.pos_embed[...]), want)
    with pytest.raises(ValueError, match="sincos2d"):
        family.init_position_table(model, "fourier")
    assert get_family("qwen2_5_vl").init_position_table is None  # rotary positions only
