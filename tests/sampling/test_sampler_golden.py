"""The sampler's outputs for fixed seeds against a recorded reference (`data/sampler_golden.npz`):
tokens equal and log-probs within 1e-5 of what the plain sampler gave (every group row holding
its own copy of the prompt's keys/values, repeated GQA heads, one softmax over the whole cache)
when the file was written. Any change to the decode loop, the sampling filters or the attention
over the cache must keep these cases; a deliberate change of the draws regenerates the file:

    JAXSEG_WRITE_GOLDEN=1 pytest tests/sampling/test_sampler_golden.py

Cases: greedy and sampled (top-k, top-p) on a mixed left-padded batch, shared-prompt groups
(group_size > 1), a multi-turn continuation with a new image, on Qwen2.5-VL and Qwen3-VL.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from jaxseg.sampling import Prompt, Sampler, SamplingParams

from .helpers import make_prompt
from .test_sampler_qwen3 import image_prompt, q3_dir, q3_model, video_prompt  # noqa: F401

GOLDEN = Path(__file__).parent / "data" / "sampler_golden.npz"
WRITE = os.environ.get("JAXSEG_WRITE_GOLDEN") == "1"
BUCKETS = dict(length_buckets=[64], cache_buckets=[128, 256])


def _mixed(tokenizer, special, media):
    return [
        make_prompt(tokenizer, special, media, (), text="Which object moves?"),
        make_prompt(tokenizer, special, media, ("img_a",), text="a"),
        make_prompt(tokenizer, special, media, ("video",), text="Find it", tail="?"),
        make_prompt(tokenizer, special, media, ("img_b", "video"), text="b", tail=" now\n"),
    ]


def _turn(tokenizer, special, media, kind):
    turn = tokenizer.encode("<|im_end|>\n<|im_start|>user\nFrame 7: ", add_special_tokens=False)
    p = make_prompt(tokenizer, special, media, (kind,), text="", tail=" <think>")
    n_user = len(tokenizer.encode("<|im_start|>user\n", add_special_tokens=False))
    return Prompt(turn + list(p.input_ids)[n_user:], p.pixel_values, p.image_grid_thw)


def _record(out, name, results):
    results[f"{name}/tokens"] = out.tokens
    results[f"{name}/logprobs"] = out.logprobs
    results[f"{name}/sampling_logprobs"] = out.sampling_logprobs
    results[f"{name}/lengths"] = out.lengths


def _suppress(special) -> tuple[int, ...]:
    """Placeholder and vision start/end ids: a sampled one would break the next turn's layout."""
    names = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")
    return tuple(special[n] for n in names)


def qwen2_5_cases(model, tokenizer, special, media) -> dict[str, np.ndarray]:
    sup = _suppress(special)
    s = Sampler(model, pad_token_id=special["pad_token_id"], **BUCKETS)
    prompts = _mixed(tokenizer, special, media)
    res: dict[str, np.ndarray] = {}
    _record(
        s.generate(prompts, max_new_tokens=12, sampling=SamplingParams(temperature=0.0)),
        "q25_greedy",
        res,
    )
    _record(
        s.generate(
            prompts,
            max_new_tokens=10,
            sampling=SamplingParams(1.0, top_k=20, suppress_tokens=sup),
            seed=3,
        ),
        "q25_topk",
        res,
    )
    top_p = SamplingParams(0.8, top_p=0.9, suppress_tokens=sup)
    _record(
        s.generate(prompts[1:3], max_new_tokens=8, sampling=top_p, seed=5, group_size=4),
        "q25_group_topp",
        res,
    )
    first = s.generate(
        prompts[2:],
        max_new_tokens=5,
        sampling=SamplingParams(1.0, suppress_tokens=sup),
        seed=7,
        group_size=3,
    )
    _record(first, "q25_turn1", res)
    segments = [_turn(tokenizer, special, media, ("img_b", "img_a")[b % 2]) for b in range(6)]
    segments[4] = None  # a finished row is skipped
    second = s.continue_rollout(
        first, segments, max_new_tokens=6, sampling=SamplingParams(1.0, suppress_tokens=sup)
    )
    _record(second, "q25_turn2", res)
    return res


def qwen3_cases(model, tokenizer, special) -> dict[str, np.ndarray]:
    sup = _suppress(special)
    s = Sampler(model, pad_token_id=special["pad_token_id"], length_buckets=[128])
    prompts = [video_prompt(tokenizer, special), image_prompt(tokenizer, special)]
    res: dict[str, np.ndarray] = {}
    first = s.generate(
        prompts,
        max_new_tokens=6,
        sampling=SamplingParams(1.0, top_k=30, suppress_tokens=sup),
        seed=2,
        group_size=4,
    )
    _record(first, "q3_group", res)
    seg = image_prompt(
        tokenizer, special, grid=(1, 4, 4), text="<|im_end|>\nnext", seed=4, head=False
    )
    second = s.continue_rollout(
        first, [seg] * 8, max_new_tokens=4, sampling=SamplingParams(1.0, suppress_tokens=sup)
    )
    _record(second, "q3_turn2", res)
    return res


def _check(results: dict[str, np.ndarray]) -> None:
    if WRITE:
        old = dict(np.load(GOLDEN)) if GOLDEN.exists() else {}
        GOLDEN.parent.mkdir(exist_ok=True)
        np.savez_compressed(GOLDEN, **{**old, **results})
        pytest.skip(f"wrote {sorted(results)} to {GOLDEN}")
    golden = np.load(GOLDEN)
    for key, value in results.items():
        ref = golden[key]
        if key.endswith("logprobs"):
            np.testing.assert_allclose(value, ref, atol=1e-5, rtol=0, err_msg=key)
        else:
            np.testing.assert_array_equal(value, ref, err_msg=key)


def test_qwen2_5_rollouts_equal_the_recorded_reference(jax_model, tokenizer, special, media):
    _check(qwen2_5_cases(jax_model, tokenizer, special, media))


def test_qwen3_rollouts_equal_the_recorded_reference(q3_model, tokenizer, special):  # noqa: F811
    _check(qwen3_cases(q3_model, tokenizer, special))
