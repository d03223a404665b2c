"""The released Qwen3-VL-2B/4B-Instruct configs (configs/hf/): parsed, built abstractly, with
the parameter count of transformers' meta-device build, and planned on a TPU slice."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from flax import nnx

from jaxseg.config import load_config
from jaxseg.models.family import get_family
from jaxseg.parallel.planner import abstract_model, plan
from jaxseg.parallel.topology import parse_topology

CONFIGS = {"qwen3_vl_2b_instruct": 2_127_532_032, "qwen3_vl_4b_instruct": 4_437_815_808}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_parameter_count_equals_transformers_meta_build(name):
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    path = f"configs/hf/{name}/config.json"
    cfg = get_family("qwen3_vl").config_from_json(path)
    assert cfg.text.mrope_section == (24, 20, 20) and cfg.tie_word_embeddings
    assert cfg.vision.deepstack_visual_indexes == (5, 11, 17)
    model = abstract_model(cfg)
    ours = sum(int(np.prod(v.shape)) for _, v in nnx.to_flat_state(nnx.state(model, nnx.Param)))
    with torch.device("meta"):
        hf = Qwen3VLForConditionalGeneration(Qwen3VLConfig(**json.loads(open(path).read())))
    assert ours == sum(p.numel() for p in hf.parameters()) == CONFIGS[name]


def test_qwen3_vl_4b_plans_on_v5p_32():
    config = load_config("qwen2_5_vl_3b_grpo:protocol=o3,remat=full")
    config.model.hf_config = "configs/hf/qwen3_vl_4b_instruct"
    result = plan(config.to_dict(), parse_topology("v5p-32"))
    lines = {line.label: line for line in result.inputs + result.params}
    assert lines["parameters"].value == CONFIGS["qwen3_vl_4b_instruct"]
    assert "16 px" in lines["vision patches / sample"].arithmetic
    assert result.total("train") > 0 and result.total("rollout") > 0
