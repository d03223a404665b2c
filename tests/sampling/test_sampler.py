"""Sampler against transformers and against the trainer's teacher-forced forward, stopping, bucketing, bad input and sharding, on a tiny random Qwen2.5-VL."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import nnx

from jaxseg.models.qwen2_5_vl import from_pretrained
from jaxseg.parallel import mesh_from_shape, place
from jaxseg.sampling import Prompt, Sampler, SamplingParams, bucket, first_stop_in_text
from jaxseg.sampling import loop as sampling_loop

from .helpers import (
    completion_logprobs,
    concat,
    hf_greedy,
    hf_logits,
    make_prompt,
    trainer_logits,
)

GREEDY = SamplingParams(temperature=0.0)
BUCKETS = dict(length_buckets=[64], cache_buckets=[128, 256])  # one compiled shape for most tests


def sampler(model, special, **kw):
    return Sampler(model, pad_token_id=special["pad_token_id"], **{**BUCKETS, **kw})


def mixed_prompts(tokenizer, special, media):
    """Text, image, video with a 1-token tail (M-RoPE continuation after a video is not
    max + 1), image + video: four different lengths."""
    return [
        make_prompt(tokenizer, special, media, (), text="Which object moves?"),
        make_prompt(tokenizer, special, media, ("img_a",), text="a"),
        make_prompt(tokenizer, special, media, ("video",), text="Find it", tail="?"),
        make_prompt(tokenizer, special, media, ("img_b", "video"), text="b", tail=" now\n"),
    ]


# ----------------------------------------------------------------------------- 1. greedy parity


def test_greedy_matches_transformers_generate_on_a_mixed_left_padded_batch(
    jax_model, hf_model, tokenizer, special, media
):
    prompts = mixed_prompts(tokenizer, special, media)
    assert len({len(p.input_ids) for p in prompts}) == 4
    out = sampler(jax_model, special).generate(prompts, max_new_tokens=12, sampling=GREEDY)
    ref, ref_logprobs = hf_greedy(hf_model, prompts, 12, special)
    np.testing.assert_array_equal(out.tokens, ref)
    # and generate's own next-token distributions (M-RoPE decode positions included)
    np.testing.assert_allclose(out.logprobs, ref_logprobs, atol=1e-4, rtol=0)
    assert (out.lengths == 12).all() and out.truncated.all()
    assert list(out.finish_reason) == ["length"] * 4


@pytest.mark.parametrize(
    "kinds,tail",
    [((), "\n"), (("img_a",), "\n"), (("video",), "?")],
    ids=["text", "image", "video"],
)
def test_greedy_matches_transformers_generate_single_prompt(
    jax_model, hf_model, tokenizer, special, media, kinds, tail
):
    prompt = make_prompt(tokenizer, special, media, kinds, text="Track the blue square.", tail=tail)
    out = sampler(jax_model, special).generate([prompt], max_new_tokens=12, sampling=GREEDY)
    ref, ref_logprobs = hf_greedy(hf_model, [prompt], 12, special)
    np.testing.assert_array_equal(out.tokens, ref)
    np.testing.assert_allclose(out.logprobs, ref_logprobs, atol=1e-4, rtol=0)


# ----------------------------------------------------------------------------- 2. log-probs


def test_sampled_logprobs_equal_teacher_forced_logprobs(
    jax_model, hf_model, tokenizer, special, media
):
    """Sampled rows (temperature 0.7, top-k 20): the returned log-probs are the trainer's
    teacher-forced log p at temperature 1 (jax forward over prompt + completion, and
    transformers' forward), to 1e-4; sampling_logprobs are under the truncated distribution."""
    prompts = mixed_prompts(tokenizer, special, media)[1:3]
    params = SamplingParams(temperature=0.7, top_k=20)
    out = sampler(jax_model, special).generate(
        prompts, max_new_tokens=10, sampling=params, seed=1, group_size=2
    )
    assert (out.sampling_logprobs >= out.logprobs - 1e-6).all()  # truncation only adds mass
    rows = [prompts[i] for i in out.prompt_index]
    pv = concat([p.pixel_values for p in rows])
    pvv = concat([p.pixel_values_videos for p in rows])
    trainer = completion_logprobs(
        trainer_logits(jax_model, out.histories, pv, pvv), out.histories, out.lengths
    )
    hf = completion_logprobs(
        hf_logits(hf_model, out.histories, special, pv, pvv), out.histories, out.lengths
    )
    for b, n in enumerate(out.lengths):
        np.testing.assert_allclose(out.logprobs[b, :n], trainer[b], atol=1e-4, rtol=0)
        np.testing.assert_allclose(out.logprobs[b, :n], hf[b], atol=1e-4, rtol=0)


# ----------------------------------------------------------------------------- 3. multi-turn


def test_appended_turn_with_new_image_equals_full_reencode(
    jax_model, hf_model, tokenizer, special, media
):
    prompts = [
        make_prompt(tokenizer, special, media, ("video",), text="Find it", tail="?"),
        make_prompt(tokenizer, special, media, ("video",), text="Which one moves?"),
    ]
    s = sampler(jax_model, special)
    first = s.generate(prompts, max_new_tokens=6, sampling=GREEDY)
    turn = tokenizer.encode("<|im_end|>\n<|im_start|>user\nFrame 7: ", add_special_tokens=False)
    segments = []
    for kind in ("img_b", "img_a"):
        p = make_prompt(tokenizer, special, media, (kind,), text="", tail=" <think>")
        n_user = len(tokenizer.encode("<|im_start|>user\n", add_special_tokens=False))
        segments.append(Prompt(turn + list(p.input_ids)[n_user:], p.pixel_values, p.image_grid_thw))
    second = s.continue_rollout(first, segments, max_new_tokens=6, sampling=GREEDY)
    for b, hist in enumerate(second.histories):
        assert hist.ids == (
            list(prompts[b].input_ids)
            + first.completions()[b]
            + list(segments[b].input_ids)
            + second.completions()[b]
        )
    pv = concat([g.pixel_values for g in segments])
    pvv = concat([p.pixel_values_videos for p in prompts])
    full = np.asarray(trainer_logits(jax_model, second.histories, pv, pvv))
    hf = hf_logits(hf_model, second.histories, special, pv, pvv)
    full_lp = completion_logprobs(full, second.histories, second.lengths)
    for b, n in enumerate(second.lengths):
        # greedy tokens of turn 2 = argmax of the full re-encode; log-probs equal
        np.testing.assert_array_equal(second.tokens[b, :n], full[b, -n - 1 : -1].argmax(-1))
        np.testing.assert_allclose(second.logprobs[b, :n], full_lp[b], atol=1e-4, rtol=0)
        # logits after the last cached token (incremental) == full re-encode, whole vocabulary
        incremental = np.asarray(second.state.logits[b])
        np.testing.assert_allclose(incremental, full[b, -1], atol=1e-4, rtol=0)
        np.testing.assert_allclose(incremental, hf[b, -1], atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="already continued"):
        s.continue_rollout(first, segments, max_new_tokens=2, sampling=GREEDY)


# ----------------------------------------------------------------------------- 4. groups


def test_shared_prefill_group_equals_independent_prefills(jax_model, tokenizer, special, media):
    prompts = mixed_prompts(tokenizer, special, media)[1:3]
    params = SamplingParams(temperature=1.0, top_p=0.9)
    group = 4
    s = sampler(jax_model, special)
    shared = s.generate(prompts, max_new_tokens=8, sampling=params, seed=5, group_size=group)
    assert s.prefill_rows == len(prompts)  # vision + prompt ran once per prompt
    repeated = [p for p in prompts for _ in range(group)]
    independent = s.generate(repeated, max_new_tokens=8, sampling=params, seed=5)
    assert s.prefill_rows == len(prompts) + len(repeated)
    np.testing.assert_array_equal(shared.tokens, independent.tokens)
    np.testing.assert_array_equal(shared.lengths, independent.lengths)
    np.testing.assert_allclose(shared.logprobs, independent.logprobs, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(shared.prompt_index, np.repeat([0, 1], group))
    # the G samples of a prompt are different draws, not copies
    assert len({tuple(r) for r in shared.tokens[:group]}) > 1


# ----------------------------------------------------------------------------- stopping


def test_eos_and_multi_token_stop_string_stop_rows(jax_model, tokenizer, special, media):
    prompts = mixed_prompts(tokenizer, special, media)[:2]
    free = sampler(jax_model, special).generate(prompts, max_new_tokens=12, sampling=GREEDY)
    row = free.tokens[0]
    # EOS: a token row 0 first emits at step k >= 2
    k = next(i for i in range(2, 12) if row[i] not in row[:i])
    eos = int(row[k])
    out = sampler(jax_model, special, eos_token_ids=[eos]).generate(
        prompts, max_new_tokens=12, sampling=GREEDY
    )
    assert out.lengths[0] == k + 1 and out.finish_reason[0] == "eos"
    assert not out.truncated[0]
    np.testing.assert_array_equal(out.tokens[0, : k + 1], row[: k + 1])
    assert (out.tokens[0, k + 1 :] == special["pad_token_id"]).all()
    assert (out.logprobs[0, k + 1 :] == 0).all()
    np.testing.assert_allclose(out.logprobs[0, : k + 1], free.logprobs[0, : k + 1], atol=1e-6)
    other = list(free.tokens[1])
    expect = other.index(eos) + 1 if eos in other else 12
    assert out.lengths[1] == expect

    # stop string spelled by two generated tokens (found by the in-loop table)
    stop = tokenizer.decode(row[3:5].tolist())
    expect = [first_stop_in_text(free.tokens[b], [stop], tokenizer.decode) or 12 for b in range(2)]
    out = sampler(jax_model, special, tokenizer=tokenizer, stop_strings=[stop]).generate(
        prompts, max_new_tokens=12, sampling=GREEDY
    )
    np.testing.assert_array_equal(out.lengths, expect)
    assert out.finish_reason[0] == "stop"


def test_stop_string_starting_inside_a_token_is_cut_by_the_host_check(
    jax_model, tokenizer, special, media
):
    # the first prompt whose greedy row has a multi-character token early on (which rows do
    # depends on the synthetic tokenizer's corpus, so look at all four)
    for prompt in mixed_prompts(tokenizer, special, media):
        prompts = [prompt]
        free = sampler(jax_model, special).generate(prompts, max_new_tokens=12, sampling=GREEDY)
        row = free.tokens[0].tolist()
        ks = [i for i in range(1, 10) if len(tokenizer.decode([row[i]])) >= 2]
        if ks:
            k = ks[0]
            break
    else:
        pytest.fail("no prompt's greedy row has a multi-character token to cut inside")
    stop = tokenizer.decode([row[k]])[1:] + tokenizer.decode([row[k + 1]])
    expect = first_stop_in_text(row, [stop], tokenizer.decode)
    assert expect is not None and expect <= k + 2
    s = sampler(jax_model, special, tokenizer=tokenizer, stop_strings=[stop])
    out = s.generate(prompts, max_new_tokens=12, sampling=GREEDY)
    assert out.lengths[0] == expect and out.finish_reason[0] == "stop"
    assert out.histories[0].ids == list(prompts[0].input_ids) + row[:expect]
    # slots past the cut are invalid: the next turn sees exactly prompt + cut completion
    mask = np.asarray(out.state.cache.key_mask[0])
    assert mask.sum() == len(prompts[0].input_ids) + expect


def test_stop_string_that_never_comes_truncates(jax_model, tokenizer, special, media):
    prompts = mixed_prompts(tokenizer, special, media)[:2]
    s = sampler(jax_model, special, tokenizer=tokenizer, stop_strings=["</select>"])
    out = s.generate(prompts, max_new_tokens=12, sampling=GREEDY)
    assert out.truncated.all() and (out.lengths == 12).all()
    assert list(out.finish_reason) == ["length", "length"]


# ----------------------------------------------------------------------------- shapes / bad input


def test_new_prompt_lengths_in_a_bucket_do_not_recompile(jax_model, tokenizer, special, media):
    s = Sampler(jax_model, pad_token_id=special["pad_token_id"])  # power-of-two buckets
    a = make_prompt(tokenizer, special, media, ("img_a",), text="Find the red circle now")
    # a longer prompt in the same length bucket, whatever the tokenizer's merges
    longer = (
        make_prompt(
            tokenizer, special, media, ("img_a",), text="Find the red circle now" + " x" * k
        )
        for k in range(1, 8)
    )
    b = next(
        p
        for p in longer
        if len(p.input_ids) > len(a.input_ids)
        and bucket(len(p.input_ids)) == bucket(len(a.input_ids))
    )
    s.generate([a], max_new_tokens=4, sampling=GREEDY)
    sizes = sampling_loop.prefill._cache_size(), sampling_loop.decode_loop._cache_size()
    s.generate([b], max_new_tokens=4, sampling=GREEDY)
    assert (sampling_loop.prefill._cache_size(), sampling_loop.decode_loop._cache_size()) == sizes


def test_bad_inputs_raise_clear_errors(jax_model, tokenizer, special, media):
    s = sampler(jax_model, special)
    good = make_prompt(tokenizer, special, media, ("img_a",))
    with pytest.raises(ValueError, match="cache_length=32 is too small"):
        s.generate([good], max_new_tokens=8, cache_length=32)
    with pytest.raises(ValueError, match="row 1: empty prompt"):
        s.generate([good, Prompt([])], max_new_tokens=4)
    with pytest.raises(ValueError, match="row 0: prompt token id 99999 outside"):
        s.generate([Prompt([1, 99999])], max_new_tokens=4)
    with pytest.raises(ValueError, match="row 0"):  # placeholders do not match the grid
        s.generate(
            [Prompt(list(good.input_ids)[:-3], good.pixel_values, good.image_grid_thw)],
            max_new_tokens=4,
        )
    with pytest.raises(ValueError, match="max_new_tokens"):
        s.generate([good], max_new_tokens=0)


def test_continuation_grows_a_full_cache(jax_model, tokenizer, special, media):
    """A cache with no room for the next turn is reallocated (bucketed), never clipped; bad
    segments are rejected before the cache is touched."""
    s = Sampler(jax_model, pad_token_id=special["pad_token_id"], length_buckets=[16, 32, 64])
    prompt = make_prompt(tokenizer, special, media, (), text="hi")
    first = s.generate([prompt], max_new_tokens=4, sampling=GREEDY, cache_length=20)
    assert first.state.cache.max_length == 20
    seg = Prompt(tokenizer.encode("<|im_end|>\n<|im_start|>user\nmore", add_special_tokens=False))
    with pytest.raises(ValueError, match="row 0: empty appended turn"):
        s.continue_rollout(first, [Prompt([])], max_new_tokens=4, sampling=GREEDY)
    with pytest.raises(ValueError, match="every segment is None"):
        s.continue_rollout(first, [None], max_new_tokens=4, sampling=GREEDY)
    # a rejected segment does not consume the rollout's cache
    second = s.continue_rollout(first, [seg], max_new_tokens=4, sampling=GREEDY)
    # 20 slots used + 16 (segment bucket) + 4 new = 40 -> default ladder bucket 48
    assert second.state.cache.max_length == 48
    full = np.asarray(trainer_logits(jax_model, second.histories))
    np.testing.assert_allclose(np.asarray(second.state.logits[0]), full[0, -1], atol=1e-4, rtol=0)


# ----------------------------------------------------------------------------- sharding


@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 (simulated) devices")
def test_sharded_sampler_matches_unsharded(hf_dir, jax_model, tokenizer, special, media):
    prompts = mixed_prompts(tokenizer, special, media)
    ref = sampler(jax_model, special).generate(prompts, max_new_tokens=8, sampling=GREEDY)
    mesh = mesh_from_shape((2, 2, 2))
    model = place(from_pretrained(hf_dir[1]), mesh, nnx.Param)
    out = sampler(model, special, mesh=mesh).generate(prompts, max_new_tokens=8, sampling=GREEDY)
    np.testing.assert_array_equal(out.tokens, ref.tokens)
    np.testing.assert_allclose(out.logprobs, ref.logprobs, atol=1e-4, rtol=0)
    spec = out.state.cache.keys[0].sharding.spec
    assert spec[0] == ("data", "fsdp") and spec[2] == "tensor"
    # one prompt (not divisible by the 4 batch shards) prefilled replicated, tiled to G = 4
    # rows, then sharded: same samples as unsharded
    params = SamplingParams(temperature=1.0, top_k=20)
    kw = dict(max_new_tokens=8, sampling=params, seed=2, group_size=4)
    ref = sampler(jax_model, special).generate(prompts[2:3], **kw)
    out = sampler(model, special, mesh=mesh).generate(prompts[2:3], **kw)
    np.testing.assert_array_equal(out.tokens, ref.tokens)
    np.testing.assert_allclose(out.logprobs, ref.logprobs, atol=1e-4, rtol=0)
    assert out.state.cache.keys[0].sharding.spec[0] == ("data", "fsdp")
