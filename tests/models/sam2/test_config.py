"""Presets carry sam2's values: the flags from the released yamls, sizes from _build_sam_heads."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from jaxseg.models.sam2 import (
    Sam2ConfigError,
    Sam2DecoderConfig,
    hiera_large,
    hiera_tiny,
    preset,
    tiny,
)

YAML_FLAGS = {  # yaml key -> config field
    "use_high_res_features_in_sam": "use_high_res_features",
    "pred_obj_scores": "pred_obj_scores",
    "pred_obj_scores_mlp": "pred_obj_scores_mlp",
    "use_multimask_token_for_obj_ptr": "use_multimask_token_for_obj_ptr",
    "iou_prediction_use_sigmoid": "iou_prediction_use_sigmoid",
}


@pytest.mark.skipif(importlib.util.find_spec("sam2") is None, reason="needs the sam2 configs")
@pytest.mark.parametrize(
    "name,yaml",
    [
        ("hiera_tiny", "sam2.1/sam2.1_hiera_t.yaml"),
        ("hiera_large", "sam2.1/sam2.1_hiera_l.yaml"),
        ("hiera_large", "sam2/sam2_hiera_l.yaml"),
    ],
)
def test_presets_match_released_yaml(name, yaml):
    from omegaconf import OmegaConf

    root = Path(importlib.util.find_spec("sam2").origin).parent / "configs"
    model = OmegaConf.load(root / yaml).model
    cfg = preset(name)
    for key, field in YAML_FLAGS.items():
        assert getattr(cfg, field) == bool(model[key]), key
    assert cfg.input_image_size == model.image_size
    assert cfg.image_embedding_size == model.image_size // 16
    assert cfg.transformer_dim == model.image_encoder.neck.d_model
    assert cfg.dynamic_multimask_via_stability  # build_sam2(apply_postprocessing=True)


def test_sizes_and_validation():
    assert hiera_tiny(256).image_embedding_size == 16 and hiera_large().mask_input_size == 256
    assert tiny().high_res_shapes == ((4, 64, 64), (8, 32, 32))
    with pytest.raises(Sam2ConfigError, match="image_size"):
        hiera_tiny(100)
    with pytest.raises(Sam2ConfigError, match="heads"):
        Sam2DecoderConfig(transformer_dim=32, heads=3)
    with pytest.raises(Sam2ConfigError, match="transformer_dim"):
        Sam2DecoderConfig(transformer_dim=36, heads=2)
    with pytest.raises(Sam2ConfigError, match="preset"):
        preset("huge")
