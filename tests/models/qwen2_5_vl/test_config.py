"""Config parsing (flat released layout and nested transformers-5 layout) and the abstract build
of the released 3B / 7B configs (parameter count equal to transformers' meta-device build)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from flax import nnx

from jaxseg.models.qwen2_5_vl import (
    ConfigError,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
)

from .conftest import tiny_hf_config

REPO = Path(__file__).resolve().parents[3]
RELEASED = {
    "3b": REPO / "configs/hf/qwen2_5_vl_3b_instruct/config.json",
    "7b": REPO / "configs/hf/qwen2_5_vl_7b_instruct/config.json",
}


def test_released_flat_layout_values_come_from_the_file():
    cfg = Qwen2_5_VLConfig.from_json_file(RELEASED["7b"])
    assert cfg.vision.tokens_per_second == 2  # class default is 4
    assert cfg.text.rms_norm_eps == 1e-6  # class default is 1e-5
    assert cfg.vision.hidden_size == 1280 and cfg.vision.out_hidden_size == 3584
    assert cfg.text.mrope_section == (16, 24, 24) and cfg.text.rope_theta == 1e6
    assert cfg.vision.fullatt_block_indexes == (7, 15, 23, 31)
    assert cfg.vision.in_channels == 3 and cfg.vision.merger_window == 4
    assert not cfg.tie_word_embeddings
    assert Qwen2_5_VLConfig.from_json_file(RELEASED["3b"]).tie_word_embeddings


def test_nested_layout_written_by_transformers5(tmp_path):
    hf = tiny_hf_config(tie_word_embeddings=True)
    hf.save_pretrained(tmp_path)
    data = json.loads((tmp_path / "config.json").read_text())
    assert "text_config" in data
    cfg = Qwen2_5_VLConfig.from_json_file(tmp_path)
    assert cfg.text.mrope_section == (2, 3, 3) and cfg.text.rope_theta == 1e4
    assert cfg.vision.fullatt_block_indexes == (1,) and cfg.tie_word_embeddings
    assert cfg.image_token_id == 290


def test_flat_and_nested_layouts_agree():
    flat = Qwen2_5_VLConfig.from_json_file(RELEASED["3b"])
    from transformers import Qwen2_5_VLConfig as HFConfig

    nested = HFConfig.from_pretrained(RELEASED["3b"].parent).to_dict()
    assert Qwen2_5_VLConfig.from_hf_dict(nested) == flat
    # and our own writer round-trips
    assert Qwen2_5_VLConfig.from_hf_dict(flat.to_hf_dict()) == flat


@pytest.mark.parametrize(
    "edit,field",
    [
        (lambda d: d.pop("rms_norm_eps"), "rms_norm_eps"),
        (lambda d: d["vision_config"].pop("tokens_per_second"), "tokens_per_second"),
        (lambda d: d.pop("rope_scaling"), "mrope_section"),
        (lambda d: d.update(use_sliding_window=True), "use_sliding_window"),
        (lambda d: d["vision_config"].update(fullatt_block_indexes=[40]), "fullatt_block_indexes"),
        (lambda d: d.update(model_type="llava"), "model_type"),
    ],
)
def test_bad_config_names_the_field(tmp_path, edit, field):
    data = json.loads(RELEASED["7b"].read_text())
    edit(data)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=field) as err:
        Qwen2_5_VLConfig.from_json_file(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("size", ["3b", "7b"])
def test_released_config_builds_abstractly_with_transformers_param_count(size):
    from transformers import Qwen2_5_VLConfig as HFConfig
    from transformers import Qwen2_5_VLForConditionalGeneration as HFModel

    cfg = Qwen2_5_VLConfig.from_json_file(RELEASED[size])
    abstract = nnx.eval_shape(lambda: Qwen2_5_VLForConditionalGeneration(cfg, rngs=nnx.Rngs(0)))
    ours = sum(int(np.prod(v.shape)) for v in jax_leaves(nnx.state(abstract, nnx.Param)))
    with torch.device("meta"):
        hf = HFModel(HFConfig.from_pretrained(RELEASED[size].parent))
    theirs = sum(p.numel() for p in hf.parameters())  # tied weights counted once
    assert ours == theirs
    print(f"\n[{size}] parameters: {ours:,}")


def jax_leaves(state):
    import jax

    return jax.tree.leaves(state)
