"""Preset configs build a working model whose HF export transformers loads."""

import numpy as np
import pytest
from flax import nnx

from jaxseg.models.qwen2_5_vl import Qwen2_5_VLForConditionalGeneration, save_pretrained
from jaxseg.models.qwen2_5_vl.presets import SIZES, preset_config

IDS = dict(image_token_id=90, video_token_id=91, vision_start_token_id=92, vision_end_token_id=93)


def test_unknown_size_is_named():
    with pytest.raises(ValueError, match="'huge'"):
        preset_config("huge", vocab_size=100, **IDS)


@pytest.mark.parametrize("size", sorted(SIZES))
def test_mrope_sections_cover_rotary_half(size):
    cfg = preset_config(size, vocab_size=100, **IDS)
    assert sum(cfg.text.mrope_section) == cfg.text.head_dim // 2
    assert cfg.vision.fullatt_block_indexes == (cfg.vision.depth - 1,)


def test_nano_exports_to_transformers(tmp_path):
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration as HF

    cfg = preset_config("nano", vocab_size=100, **IDS)
    model = Qwen2_5_VLForConditionalGeneration(cfg, rngs=nnx.Rngs(0))
    save_pretrained(model, tmp_path)
    hf = HF.from_pretrained(tmp_path, attn_implementation="eager").eval()
    ids = np.random.default_rng(0).integers(0, 90, (1, 12))
    ours = np.asarray(model(ids))
    with torch.no_grad():
        theirs = hf(input_ids=torch.as_tensor(ids)).logits.numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-4)
