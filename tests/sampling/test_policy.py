"""`SamplerPolicy` drives multi-turn episodes through the protocols' `Policy` interface with
the project's tokenizer + HF processor: shared prefill for identical openings, appended turns
with new images, finished episodes skipped, and turn records that rebuild the exact token
sequence whose teacher-forced log-probs are the sampler's."""

from __future__ import annotations

import numpy as np
import pytest

from jaxseg.protocols.policy import Policy, image_part, message, text_part
from jaxseg.sampling import History, Sampler, SamplingParams
from jaxseg.sampling.policy import SamplerPolicy

from .helpers import completion_logprobs, trainer_logits


@pytest.fixture(scope="module")
def processor(tokenizer):
    from jaxseg.data.tokenizer import build_processor

    return build_processor(tokenizer)


def image(seed, h=56, w=84):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_policy_runs_two_turns_and_records_exact_tokens(jax_model, tokenizer, special, processor):
    sampler = Sampler(
        jax_model,
        eos_token_ids=[special["eos_token_id"]],
        pad_token_id=special["pad_token_id"],
        length_buckets=[64, 128],
        cache_buckets=[128, 256],
    )
    policy = SamplerPolicy(
        sampler, processor, max_new_tokens=8, sampling=SamplingParams(temperature=0.0)
    )
    assert isinstance(policy, Policy)
    openings = [
        [message("user", [image_part(image(s)), text_part(f"Find object {s}.")], meta={"k": s})]
        for s in (1, 2)
    ]
    state = policy.start([openings[0]] * 2 + [openings[1]] * 2)  # G = 2 episodes per sample
    first = policy.respond(state, stop=("</answer>",))
    assert sampler.prefill_rows == 2  # one prefill per sample, shared by its 2 episodes
    assert all(isinstance(t, str) for t in first)
    assert first[0] == first[1] and first[2] == first[3]  # greedy: group members agree

    policy.finish(state, 1)
    policy.finish(state, 3)
    for i in (0, 2):
        obs = message("user", [text_part("Frame 5: "), image_part(image(10 + i, 84, 56))])
        policy.append_user_turn(state, i, obs)
    second = policy.respond(state, stop=("</answer>",))
    assert second[1] is None and second[3] is None
    assert isinstance(second[0], str) and isinstance(second[2], str)
    assert len(state.turn_info[1]) == 1 and len(state.turn_info[0]) == 2
    assert state.rollout.finish_reason[1] == "skipped"

    histories = []
    pixel_rows = []
    for i in (0, 2):
        info = state.turn_info[i]
        ids = [t for turn in info for t in turn["segment_ids"] + turn["token_ids"]]
        assert ids == state.rollout.histories[i].ids  # the cache holds exactly these tokens
        seg_text = tokenizer.decode(info[1]["segment_ids"])
        head = "\n" if info[0]["finish_reason"] == "eos" else "<|im_end|>\n"
        assert seg_text.startswith(head + "<|im_start|>user\nFrame 5: <|vision_start|>")
        assert seg_text.endswith("<|im_end|>\n<|im_start|>assistant\n")
        assert state.conversations[i][-1]["content"][0]["text"] == second[i]
        histories.append(state.rollout.histories[i])
        for m in state.conversations[i]:
            for part in m["content"]:
                if part.get("type") == "image":
                    pixel_rows.append(
                        processor.image_processor(images=[part["image"]], return_tensors="np")[
                            "pixel_values"
                        ]
                    )
    # teacher-forced log-probs over each whole episode == the recorded per-turn log-probs
    logits = trainer_logits(jax_model, histories, np.concatenate(pixel_rows))
    for b, i in enumerate((0, 2)):
        info = state.turn_info[i]
        n2 = len(info[1]["token_ids"])
        lp = completion_logprobs(np.asarray(logits[b : b + 1]), [histories[b]], [n2])[0]
        np.testing.assert_allclose(info[1]["logprobs"], lp, atol=1e-4, rtol=0)
    assert isinstance(histories[0], History)


def test_respond_needs_its_own_state(jax_model, special, processor):
    from jaxseg.protocols.policy import PolicyState

    policy = SamplerPolicy(Sampler(jax_model, pad_token_id=special["pad_token_id"]), processor)
    with pytest.raises(TypeError, match="its own start"):
        policy.respond(PolicyState.open([[message("user", [text_part("hi")])]]))
