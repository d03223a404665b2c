"""The sampler on a tiny random Qwen3-VL against transformers' `generate`: greedy tokens from a
video prompt (per-frame timestamps, DeepStack), shared-prefill groups, and a multi-turn
continuation with a new frame against a full re-encode."""

from __future__ import annotations

import hf_tiny
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxseg.models.family import family_of
from jaxseg.sampling import Prompt, Sampler, SamplingParams

from .helpers import completion_logprobs, left_pad

GREEDY = SamplingParams(temperature=0.0)
PATCH_DIM = 3 * 2 * 16 * 16


@pytest.fixture(scope="module")
def q3_dir(tmp_path_factory, tokenizer, special):
    config = hf_tiny.tiny_hf_qwen3_config(vocab=len(tokenizer), ids=special)
    model = hf_tiny.build_hf_qwen3(config, seed=0)
    with torch.no_grad():
        model.lm_head.weight.mul_(8.0)  # sharper than random init: no near-tied greedy picks
    path = tmp_path_factory.mktemp("qwen3_sampler")
    model.save_pretrained(path)
    return model, path


@pytest.fixture(scope="module")
def q3_model(q3_dir):
    from jaxseg.models.family import load_pretrained

    return load_pretrained(q3_dir[1])


def _pixels(seed, grid):
    return np.random.default_rng(seed).standard_normal((int(np.prod(grid)), PATCH_DIM), np.float32)


def video_prompt(tokenizer, special, grid=(3, 4, 4), text="Find the red circle.", seed=1):
    """Qwen3VLProcessor's layout: per temporal patch "<t seconds>", vision_start, its
    placeholders, vision_end."""
    enc = lambda s: tokenizer.encode(s, add_special_tokens=False)  # noqa: E731
    t, h, w = grid
    ids = enc("<|im_start|>user\n" + text)
    for k in range(t):
        ids += enc(f"<{0.5 + k:.1f} seconds>")
        ids += [special["vision_start_token_id"]]
        ids += [special["video_token_id"]] * (h * w // 4)
        ids += [special["vision_end_token_id"]]
    ids += enc("?\n<|im_start|>assistant\n")
    return Prompt(
        input_ids=ids, pixel_values_videos=_pixels(seed, grid), video_grid_thw=np.asarray([grid])
    )


def image_prompt(tokenizer, special, grid=(1, 4, 6), text="Box it", seed=2, head=True):
    enc = lambda s: tokenizer.encode(s, add_special_tokens=False)  # noqa: E731
    ids = enc(("<|im_start|>user\n" if head else "") + text)
    ids += [special["vision_start_token_id"]]
    ids += [special["image_token_id"]] * (int(np.prod(grid)) // 4)
    ids += [special["vision_end_token_id"]] + enc("\n")
    return Prompt(
        input_ids=ids, pixel_values=_pixels(seed, grid), image_grid_thw=np.asarray([grid])
    )


def hf_kwargs(prompts):
    kw = {}
    for pv, grid in (("pixel_values", "image_grid_thw"), ("pixel_values_videos", "video_grid_thw")):
        rows = [p for p in prompts if getattr(p, pv) is not None]
        if rows:
            kw[pv] = torch.tensor(np.concatenate([getattr(p, pv) for p in rows]))
            kw[grid] = torch.tensor(np.concatenate([getattr(p, grid) for p in rows]))
    return kw


def hf_types(ids, special):
    ids = torch.as_tensor(ids)
    return (ids == special["image_token_id"]).long() + 2 * (ids == special["video_token_id"]).long()


def test_greedy_matches_transformers_generate_from_a_video_prompt(
    q3_dir, q3_model, tokenizer, special
):
    prompts = [
        video_prompt(tokenizer, special),
        image_prompt(tokenizer, special),
        Prompt(
            input_ids=tokenizer.encode(
                "<|im_start|>user\nWhich one moves?", add_special_tokens=False
            )
        ),
    ]
    s = Sampler(q3_model, pad_token_id=special["pad_token_id"], length_buckets=[128])
    out = s.generate(prompts, max_new_tokens=16, sampling=GREEDY)
    ids, mask = left_pad([list(p.input_ids) for p in prompts], special["pad_token_id"])
    with torch.no_grad():
        ref = q3_dir[0].generate(
            input_ids=torch.tensor(ids),
            attention_mask=torch.tensor(mask),
            mm_token_type_ids=hf_types(ids, special),
            max_new_tokens=16,
            min_new_tokens=16,
            do_sample=False,
            pad_token_id=special["pad_token_id"],
            eos_token_id=None,
            output_logits=True,
            return_dict_in_generate=True,
            **hf_kwargs(prompts),
        )
    tokens = ref.sequences[:, ids.shape[1] :].numpy()
    np.testing.assert_array_equal(out.tokens, tokens)
    logp = torch.log_softmax(torch.stack(ref.logits, 1).float(), -1)
    picked = logp.gather(-1, torch.tensor(tokens)[..., None])[..., 0].numpy()
    np.testing.assert_allclose(out.logprobs, picked, atol=1e-4, rtol=0)
    # a shared-prefill group of 3 greedy samples per prompt: every row of a group equals it
    group = s.generate(prompts[:2], max_new_tokens=16, sampling=GREEDY, group_size=3)
    np.testing.assert_array_equal(group.tokens, np.repeat(out.tokens[:2], 3, axis=0))


def full_reencode_logits(model, histories, pv, pvv):
    family, cfg = family_of(model), model.config
    ids, mask = left_pad([h.ids for h in histories], 0)
    igrids = [g for h in histories for g in h.image_grids]
    vgrids = [g for h in histories for g in h.video_grids]
    positions, _ = family.get_rope_index(
        ids,
        np.stack(igrids) if igrids else None,
        np.stack(vgrids) if vgrids else None,
        None,
        mask,
        config=cfg,
    )
    return np.asarray(
        model.forward(
            jnp.asarray(ids),
            jnp.asarray(mask),
            jnp.asarray(positions),
            pixel_values=None if pv is None else jnp.asarray(pv),
            image_layout=family.vision_layout(np.stack(igrids), cfg.vision) if igrids else None,
            pixel_values_videos=None if pvv is None else jnp.asarray(pvv),
            video_layout=family.vision_layout(np.stack(vgrids), cfg.vision) if vgrids else None,
        )[0]
    )


def test_continuation_with_a_new_frame_equals_full_reencode(q3_dir, q3_model, tokenizer, special):
    prompts = [video_prompt(tokenizer, special), video_prompt(tokenizer, special, text="Where?")]
    s = Sampler(q3_model, pad_token_id=special["pad_token_id"], length_buckets=[128])
    first = s.generate(prompts, max_new_tokens=6, sampling=GREEDY)
    turn = tokenizer.encode("<|im_end|>\n<|im_start|>user\nFrame 7: ", add_special_tokens=False)
    segments = []
    for seed in (5, 6):
        p = image_prompt(tokenizer, special, text="", seed=seed, head=False)
        segments.append(Prompt(turn + list(p.input_ids), p.pixel_values, p.image_grid_thw))
    second = s.continue_rollout(first, segments, max_new_tokens=6, sampling=GREEDY)
    pv = np.concatenate([g.pixel_values for g in segments])
    pvv = np.concatenate([p.pixel_values_videos for p in prompts])
    full = full_reencode_logits(q3_model, second.histories, pv, pvv)
    ids, mask = left_pad([h.ids for h in second.histories], special["pad_token_id"])
    with torch.no_grad():
        hf = (
            q3_dir[0](
                input_ids=torch.tensor(ids),
                attention_mask=torch.tensor(mask),
                mm_token_type_ids=hf_types(ids, special),
                pixel_values=torch.tensor(pv),
                image_grid_thw=torch.tensor(np.concatenate([g.image_grid_thw for g in segments])),
                pixel_values_videos=torch.tensor(pvv),
                video_grid_thw=torch.tensor(np.concatenate([p.video_grid_thw for p in prompts])),
            )
            .logits.float()
            .numpy()
        )
    lp = completion_logprobs(full, second.histories, second.lengths)
    for b, n in enumerate(second.lengths):
        np.testing.assert_array_equal(second.tokens[b, :n], full[b, -n - 1 : -1].argmax(-1))
        np.testing.assert_allclose(second.logprobs[b, :n], lp[b], atol=1e-4, rtol=0)
        incremental = np.asarray(second.state.logits[b])
        np.testing.assert_allclose(incremental, full[b, -1], atol=1e-4, rtol=0)
        np.testing.assert_allclose(incremental, hf[b, -1], atol=1e-4, rtol=0)
