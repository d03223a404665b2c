"""The Qwen2.5-VL encode hook: HF image processor + placeholder expansion + M-RoPE positions."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest

from jaxseg.data.encode import Clip, Qwen25VLEncode

SPECIAL = [
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<|endoftext|>",
]


@pytest.fixture(scope="module")
def parts():
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models, pre_tokenizers

    from jaxseg.models.qwen2_5_vl.config import Qwen2_5_VLConfig

    words = ["[UNK]", *SPECIAL, "system", "user", "assistant", "\n"]
    vocab = {w: i for i, w in enumerate(words)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    tok.add_special_tokens(SPECIAL)
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")
    hf = transformers.Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=64,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 1e4},
        ),
        vision_config=dict(
            depth=1,
            hidden_size=16,
            intermediate_size=32,
            num_heads=2,
            out_hidden_size=32,
            fullatt_block_indexes=[0],
            tokens_per_second=2,
        ),
        image_token_id=vocab["<|image_pad|>"],
        video_token_id=vocab["<|video_pad|>"],
        vision_start_token_id=vocab["<|vision_start|>"],
        vision_end_token_id=vocab["<|vision_end|>"],
    )
    config = Qwen2_5_VLConfig.from_hf_dict(hf.to_dict())
    from transformers.models.qwen2_vl import image_processing_pil_qwen2_vl as ip

    image_processor = ip.Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=112 * 112)
    return tokenizer, image_processor, config


def test_encode_expands_placeholders_and_positions(parts):
    tokenizer, image_processor, config = parts
    frames = np.random.default_rng(0).integers(0, 255, (3, 56, 84, 3), dtype=np.uint8)
    clip = Clip(
        "v",
        "0",
        "the red one",
        0,
        frames,
        None,
        np.array([0, 5, 10]),
        np.array([0, 1, 2]),
        -1,
        (56, 84),
    )
    out = Qwen25VLEncode(tokenizer, image_processor, config)(clip)
    grid = out["image_grid_thw"]
    np.testing.assert_array_equal(grid, [[1, 4, 6]] * 3)  # 56x84 px / 14 px patches
    ids = out["input_ids"]
    image_tokens = ids == config.image_token_id
    assert image_tokens.sum() == 3 * (4 * 6) // 4  # merged 2x2
    assert out["pixel_values"].shape == (3 * 4 * 6, 3 * 2 * 14 * 14)
    pos = out["position_ids"]
    assert pos.shape == (3, len(ids))
    first = int(np.argmax(image_tokens))
    # text before the first image: 1-D positions on all three rows
    np.testing.assert_array_equal(pos[:, :first], np.tile(np.arange(first), (3, 1)))
    # the first image's 2x3 merged grid: t constant, h in {0, 1}, w in {0, 1, 2}
    block = pos[:, first : first + 6] - first
    np.testing.assert_array_equal(block[0], 0)
    np.testing.assert_array_equal(block[1], [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(block[2], [0, 1, 2, 0, 1, 2])
    assert out["attention_mask"].sum() == len(ids)


def test_pipeline_with_qwen_encode_pads_every_key(parts, tmp_path):
    from jaxseg.data.pipeline import PipelineConfig, build_dataset
    from jaxseg.data.readers import read_revos
    from jaxseg.data.readers.layouts import ExpressionSpec, VideoSpec, write_revos

    tokenizer, image_processor, config = parts
    rng = np.random.default_rng(0)
    masks = np.zeros((5, 30, 40), bool)
    masks[:, 5:15, 5:20] = True
    vids = [
        VideoSpec(
            f"v{i}",
            rng.integers(0, 255, (5, 30, 40, 3), dtype=np.uint8),
            {1: masks},
            [ExpressionSpec("the box", [1], 0)],
        )
        for i in range(3)
    ]
    write_revos(tmp_path, vids, split="train")
    cfg = PipelineConfig(
        num_frames=4,
        sampling="keyframe",
        frame_size=(56, 56),
        batch_size=2,
        pixel_multiple=64,
        shuffle=False,
    )
    ds = build_dataset(
        read_revos(tmp_path, "train"),
        cfg,
        Qwen25VLEncode(tokenizer, image_processor, config),
        seed=0,
    )
    batch = next(iter(ds))
    b, length = batch["input_ids"].shape
    assert b == 2 and length in cfg.seq_buckets
    assert batch["position_ids"].shape == (2, 3, length)
    assert batch["pixel_values"].shape[1] % cfg.pixel_multiple == 0
    assert batch["image_grid_thw"].shape == (2, 4, 3)
    valid = batch["frame_valid"]
    # padded frame slots carry an all-zero grid, real ones the 56x56 grid
    np.testing.assert_array_equal(batch["image_grid_thw"][valid], [[1, 4, 4]] * int(valid.sum()))
    assert not batch["image_grid_thw"][~valid].any()


def test_matches_the_hf_processor_with_the_synthetic_tokenizer():
    """Same ids and pixels as transformers' Qwen2.5-VL processor fed the equivalent text."""
    import importlib

    tokenizer_mod = importlib.import_module("jaxseg.data.tokenizer")
    transformers = pytest.importorskip("transformers")
    from jaxseg.models.qwen2_5_vl.config import Qwen2_5_VLConfig

    tok = tokenizer_mod.build_tokenizer()
    processor = tokenizer_mod.build_processor(tok)
    ids = tokenizer_mod.special_token_ids(tok)
    hf = transformers.Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=len(tok),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 1e4},
        ),
        vision_config=dict(
            depth=1,
            hidden_size=16,
            intermediate_size=32,
            num_heads=2,
            out_hidden_size=32,
            fullatt_block_indexes=[0],
        ),
        **{
            k: ids[k]
            for k in (
                "image_token_id",
                "video_token_id",
                "vision_start_token_id",
                "vision_end_token_id",
            )
        },
    )
    config = Qwen2_5_VLConfig.from_hf_dict(hf.to_dict())
    frames = np.random.default_rng(1).integers(0, 255, (3, 64, 96, 3), dtype=np.uint8)
    clip = Clip(
        "v",
        "0",
        "The red circle",
        1,
        frames,
        None,
        np.array([2, 9, 16]),
        np.array([0, 1, 2]),
        -1,
        (64, 96),
    )
    enc = Qwen25VLEncode(tok, processor.image_processor, config)
    ours = enc(clip)
    from jaxseg.data.encode import _chat, user_prompt

    text = _chat(tok, enc.system_prompt, user_prompt(clip)).replace(
        "<image>", "<|vision_start|><|image_pad|><|vision_end|>"
    )
    ref = processor(text=[text], images=list(frames), return_tensors="np")
    np.testing.assert_array_equal(ours["input_ids"], ref["input_ids"][0])
    np.testing.assert_array_equal(ours["image_grid_thw"], ref["image_grid_thw"])
    np.testing.assert_allclose(ours["pixel_values"], ref["pixel_values"], rtol=0, atol=0)
