"""Every protocol's conversations render with Qwen2.5-VL's chat template and processor (the
synthetic tokenizer): one vision block per image, meta ignored, assistant turns verbatim."""

import numpy as np
import pytest

from jaxseg.data.tokenizer import build_processor, build_tokenizer, special_token_ids
from jaxseg.protocols import PROTOCOLS, OraclePolicy, make_protocol, run_episodes
from jaxseg.protocols.observation import frame_parts
from jaxseg.protocols.policy import message_images, message_text
from jaxseg.segmenter import make_backend

from .helpers import square_sample


class RecordingOracle(OraclePolicy):
    def start(self, conversations):
        self.state = super().start(conversations)
        return self.state


@pytest.fixture(scope="module")
def processor():
    return build_processor(build_tokenizer())


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_conversations_render_and_encode(name, processor, synth_samples):
    protocol = make_protocol(name)
    samples = [s for s in synth_samples if not s.is_null][:2]
    policy = RecordingOracle(protocol, samples)
    run_episodes(protocol, policy, samples, backend=make_backend("oracle"))
    ids = special_token_ids(processor.tokenizer)
    for conv in policy.state.conversations:
        text = processor.apply_chat_template(conv, tokenize=False)
        images = [im for m in conv for im in message_images(m)]
        assert text.count("<|vision_start|><|image_pad|><|vision_end|>") == len(images) > 0
        for m in conv:
            if m["role"] == "assistant":
                assert message_text(m) in text
        enc = processor(text=[text], images=images, return_tensors="np")
        grid = enc["image_grid_thw"]  # [n_images, 3]: patches (t, h, w) before 2x2 merging
        n_pad = int((enc["input_ids"] == ids["image_token_id"]).sum())
        assert grid.shape[0] == len(images) and n_pad == int(np.prod(grid, axis=1).sum()) // 4


def test_frame_labels_use_absolute_indices():
    s = square_sample(stride=5)
    parts = frame_parts(s, [0, 5, 11], 28)
    assert [p["text"] for p in parts[::2]] == ["Frame 0: ", "Frame 25: ", "Frame 55: "]
    assert all(p["image"].shape == (28, 28, 3) for p in parts[1::2])
