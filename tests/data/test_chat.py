"""ChatEncoder equals the processor's own chat template + placeholder expansion."""

import numpy as np
import pytest

from jaxseg.data.chat import ChatEncoder
from jaxseg.data.tokenizer import build_processor, build_tokenizer


@pytest.fixture(scope="module")
def processor():
    return build_processor(build_tokenizer())


def _conversation(rng):
    img = lambda h, w: rng.integers(0, 256, (h, w, 3), dtype=np.uint8)  # noqa: E731
    return [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "(0s)"},
                {"type": "image", "image": img(128, 128)},
                {"type": "text", "text": ", (5s)"},
                {"type": "image", "image": img(96, 150)},
                {"type": "text", "text": "\nWhich red circle stops first?"},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {
                    "type": "text",
                    "text": '<think>the red circle stops at 5</think><answer>{"keyframe": 5}</answer>',
                }
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "image", "image": img(128, 128)},
                {"type": "text", "text": "Check again."},
            ],
        },
    ]


def test_matches_processor_template(processor):
    conv = _conversation(np.random.default_rng(0))
    enc = ChatEncoder(processor).encode(conv, add_generation_prompt=True)
    text = processor.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
    images = [p["image"] for m in conv for p in m["content"] if p["type"] == "image"]
    ref = processor(text=[text], images=images, return_tensors="np")
    np.testing.assert_array_equal(enc.input_ids, ref["input_ids"][0])
    np.testing.assert_array_equal(enc.image_grid_thw, ref["image_grid_thw"])
    np.testing.assert_allclose(enc.pixel_values, ref["pixel_values"])


def test_policy_mask_covers_assistant_content_and_end(processor):
    conv = _conversation(np.random.default_rng(1))
    enc = ChatEncoder(processor).encode(conv)
    tok = processor.tokenizer
    policy_text = tok.decode(enc.input_ids[enc.policy_mask == 1])
    assert policy_text == conv[1]["content"][0]["text"] + "<|im_end|>"


def test_appended_turn_continues_the_stream(processor):
    """prompt + sampled (content + im_end) + appended turn == encoding the whole conversation."""
    conv = _conversation(np.random.default_rng(2))
    enc = ChatEncoder(processor)
    whole = enc.encode(conv, add_generation_prompt=True)
    prompt = enc.encode(conv[:1], add_generation_prompt=True)
    sampled = enc._text(conv[1]["content"][0]["text"]) + [enc._ids["<|im_end|>"]]
    turn = enc.encode(
        conv[2:], add_generation_prompt=True, add_default_system=False, leading_newline=True
    )
    joined = np.concatenate([prompt.input_ids, sampled, turn.input_ids])
    np.testing.assert_array_equal(joined, whole.input_ids)


def test_bad_role_is_named(processor):
    with pytest.raises(ValueError, match="message 1: role 'tool'"):
        ChatEncoder(processor).encode([{"role": "tool", "content": "x"}])
