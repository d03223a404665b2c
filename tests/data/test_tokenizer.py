"""The synthetic-world tokenizer keeps Qwen2.5-VL's special tokens, template and processor."""

from __future__ import annotations

import json
import os
import re
import unicodedata

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from jaxseg.data.tokenizer import (  # noqa: E402
    PROTOCOL_TAGS,
    QWEN2_5_VL_CHAT_TEMPLATE,
    QWEN_SPECIAL_TOKENS,
    VOCAB_LIMIT,
    build_processor,
    build_tokenizer,
    check_processor_matches,
    load_processor,
    protocol_corpus,
    save_processor,
    special_token_ids,
)


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


def test_vocab_is_small_and_specials_keep_their_roles(tok):
    assert len(tok) < VOCAB_LIMIT
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    assert tok.bos_token is None
    for token in QWEN_SPECIAL_TOKENS + PROTOCOL_TAGS:
        ids = tok(token, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1 and tok.convert_ids_to_tokens(ids[0]) == token
    ids = special_token_ids(tok)
    assert ids["image_token_id"] == tok.convert_tokens_to_ids("<|image_pad|>")
    assert len(set(ids.values())) == len(ids) - 1  # bos shares pad's id, as in Qwen2.5-VL
    # the grammar's words are single tokens; digits are split one by one, as in Qwen2
    assert len(tok("the small red circle that enters the scene last")["input_ids"]) == 9
    assert tok.convert_ids_to_tokens(tok("2024")["input_ids"]) == ["2", "0", "2", "4"]


def test_protocol_tags_survive_skip_special_tokens(tok):
    text = '<think>the star stops</think><answer>{"keyframe": 7}</answer><|im_end|>'
    ids = tok(text)["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == text.replace("<|im_end|>", "")


@pytest.mark.parametrize(
    "text",
    [
        "which shape disappears behind the large blue hexagon?",
        '<select>{"start": 3, "end": 12, "keyframe": 8}</select>',
        "Frame 17: ünïcode, tabs\tand\nnewlines ✓ — 日本",
        "",
    ],
)
def test_round_trip(tok, text):
    assert tok.decode(tok(text)["input_ids"]) == text


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=40))
def test_round_trip_any_nfc_text(tok, text):
    assume(unicodedata.normalize("NFC", text) == text)  # Qwen2's normalizer is NFC
    assert tok.decode(tok(text)["input_ids"]) == text


def test_chat_template_is_qwen25vl(tok):
    assert tok.chat_template == QWEN2_5_VL_CHAT_TEMPLATE
    messages = [
        {
            "role": "user",
            "content": [{"type": "image"}, {"type": "video"}, {"type": "text", "text": "q"}],
        }
    ]
    rendered = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>"
        "<|vision_start|><|video_pad|><|vision_end|>q<|im_end|>\n<|im_start|>assistant\n"
    )
    with_ids = tok.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=False, add_vision_id=True
    )
    assert "Picture 1: <|vision_start|>" in with_ids and "Video 1: <|vision_start|>" in with_ids


def test_tokenizer_saves_and_loads_with_autotokenizer(tok, tmp_path):
    from transformers import AutoTokenizer

    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    text = "the two shapes that collide <|image_pad|><answer>[SEG]</answer>"
    assert again(text)["input_ids"] == tok(text)["input_ids"]
    assert again.chat_template == tok.chat_template
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["eos_token"] == "<|im_end|>"


def test_training_is_deterministic():
    texts = ["the red circle enters", "the blue star stops", "both red circles"] * 4
    a = build_tokenizer(400, texts)
    b = build_tokenizer(400, texts)
    assert a.backend_tokenizer.to_str() == b.backend_tokenizer.to_str()
    with pytest.raises(ValueError, match="vocab_size"):
        build_tokenizer(VOCAB_LIMIT + 1, texts)
    assert protocol_corpus(videos=1, seed=3) == protocol_corpus(videos=1, seed=3)


def _pieces(text: str) -> list[str]:
    """`text` split around added tokens (tags, specials), as encoding splits it."""
    added = "|".join(re.escape(t) for t in PROTOCOL_TAGS + QWEN_SPECIAL_TOKENS)
    return [p for p in re.split(f"({added})", text) if p]


def test_protocol_text_costs_one_token_per_pretoken(tok):
    # held-out episodes (another seed than the training corpus): every word with its leading
    # space, every punctuation run and every tag is one token; only Qwen's digit split and the
    # space before a number remain (the grammar-only BPE it replaced spent 1.53 tokens per pre-token)
    pre = tok.backend_tokenizer.pre_tokenizer
    n_tokens = n_pre = 0
    for text in protocol_corpus(videos=2, seed=11):
        for piece in _pieces(text):
            n_tokens += len(tok(piece, add_special_tokens=False)["input_ids"])
            n_pre += 1 if piece in PROTOCOL_TAGS else len(pre.pre_tokenize_str(piece))
    assert n_pre > 5000
    assert n_tokens <= 1.01 * n_pre, (n_tokens, n_pre)


# (frame h, w) -> resized (h, w) by hand: each side rounded to a multiple of 28 px, the area
# is inside [4, 64] * 28^2 so no rescale; tokens = (h/14)(w/14)/4 (2x2 patch merge)
@pytest.mark.parametrize(
    "hw, resized, expected",
    [((128, 128), (140, 140), 25), ((160, 160), (168, 168), 36), ((96, 150), (84, 140), 15)],
)
def test_processor_expands_image_pad_to_the_patch_count(tok, hw, resized, expected, tmp_path):
    processor = build_processor(tok)
    h, w = hw
    rh, rw = resized
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "q"}]}]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    image = Image.fromarray(np.full((h, w, 3), 90, np.uint8))
    out = processor(images=[image], text=[text], return_tensors="np")
    pad_id = special_token_ids(tok)["image_token_id"]
    assert (out["input_ids"] == pad_id).sum() == expected
    assert out["image_grid_thw"].tolist() == [[1, rh // 14, rw // 14]]
    assert out["pixel_values"].shape == (rh // 14 * rw // 14, 3 * 2 * 14 * 14)

    save_processor(processor, tmp_path)
    assert {"tokenizer.json", "tokenizer_config.json", "processor_config.json"} <= {
        p.name for p in tmp_path.iterdir()
    }
    cfg = json.loads((tmp_path / "processor_config.json").read_text())
    assert cfg["processor_class"] == "Qwen2_5_VLProcessor"
    assert cfg["video_processor"]["max_pixels"] < cfg["image_processor"]["size"]["longest_edge"]
    again = load_processor(tmp_path)
    out2 = again(images=[image], text=[text], return_tensors="np")
    np.testing.assert_array_equal(out2["input_ids"], out["input_ids"])
    np.testing.assert_allclose(out2["pixel_values"], out["pixel_values"])


def test_a_tower_of_8_px_patches_merged_4x4_gets_the_same_tokens_per_frame(tok, tmp_path):
    """Qwen3-VL's 16 px patches merged 2x2 and 8 px patches merged 4x4 both make 32 px merged
    tokens: the same placeholders per frame, four times the patch rows; saved and loaded, the
    processor keeps its patch and merge size, and a model of another one is refused, named."""
    from types import SimpleNamespace

    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "q"}]}]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    image = Image.fromarray(np.full((112, 140, 3), 90, np.uint8))
    pad_id = special_token_ids(tok)["image_token_id"]
    released = build_processor(tok, family="qwen3_vl")
    fine = build_processor(tok, family="qwen3_vl", patch_size=8, merge_size=4)
    a = released(images=[image], text=[text], return_tensors="np")
    b = fine(images=[image], text=[text], return_tensors="np")
    assert (a["input_ids"] == pad_id).sum() == (b["input_ids"] == pad_id).sum() == 16
    assert b["image_grid_thw"].tolist() == [[1, 16, 16]]
    assert b["pixel_values"].shape == (256, 3 * 2 * 8 * 8)

    save_processor(fine, tmp_path)
    again = load_processor(tmp_path)
    assert (again.image_processor.patch_size, again.image_processor.merge_size) == (8, 4)
    vision = SimpleNamespace(patch_size=8, spatial_merge_size=4)
    check_processor_matches(again, SimpleNamespace(vision=vision))
    with pytest.raises(ValueError, match="merge_size=2 but the model's vision_config"):
        check_processor_matches(
            released, SimpleNamespace(vision=SimpleNamespace(patch_size=16, spatial_merge_size=4))
        )


def test_load_processor_names_the_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        load_processor(tmp_path)
