"""Vision tower features against transformers' (fp32, eager), padded layouts, jit."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxseg.models.qwen2_5_vl import vision_layout

ATOL = 1e-4


def hf_features(hf_model, pixel_values, grid):
    with torch.no_grad():
        out = hf_model.model.get_image_features(torch.tensor(pixel_values), torch.tensor(grid))
    return torch.cat(out.pooler_output).numpy()


@pytest.mark.parametrize("name", ["img_a", "img_b", "video"])
def test_vision_features_match_transformers(hf_model, jax_model, media, name):
    pixel_values, grid = media[name]
    ref = hf_features(hf_model, pixel_values, grid)
    out = np.asarray(jax_model.get_image_features(jnp.asarray(pixel_values), grid))
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, atol=ATOL, rtol=0)


def test_two_items_in_one_call_match_transformers(hf_model, jax_model, media):
    """Video then image in one tower call: segments keep them apart."""
    pv = np.concatenate([media["video"][0], media["img_b"][0]])
    grid = np.concatenate([media["video"][1], media["img_b"][1]])
    ref = hf_features(hf_model, pv, grid)
    out = np.asarray(jax_model.get_image_features(jnp.asarray(pv), grid))
    np.testing.assert_allclose(out, ref, atol=ATOL, rtol=0)


def test_padded_layout_under_jit_equals_unpadded(jax_model, media):
    """One compiled shape for several inputs: pad patches never reach the real features."""
    pixel_values, grid = media["img_a"]
    n = pixel_values.shape[0]
    layout = vision_layout(grid, jax_model.config.vision, pad_to=n + 24)

    @jax.jit
    def features(model, pv, layout):
        return model.get_image_features(pv, layout=layout)

    padded = np.asarray(features(jax_model, jnp.asarray(pixel_values), layout))
    plain = np.asarray(jax_model.get_image_features(jnp.asarray(pixel_values), grid))
    assert padded.shape[0] == (n + 24) // 4
    np.testing.assert_allclose(padded[: n // 4], plain, atol=1e-5, rtol=0)


def test_wrong_pixel_rows_are_rejected(jax_model, media):
    pixel_values, grid = media["img_a"]
    with pytest.raises(ValueError, match="rows"):
        jax_model.get_image_features(jnp.asarray(pixel_values[:-4]), grid)
