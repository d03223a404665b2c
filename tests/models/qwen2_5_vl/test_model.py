"""Full-model logits against transformers (fp32, eager attention): text, images, video,
left padding, plus the jit path and the KV-cache path (prefill + decode == full forward)."""

from __future__ import annotations

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg.models.qwen2_5_vl import (
    KVCache,
    from_pretrained,
    get_rope_index,
    vision_layout,
)
from jaxseg.rl.logprobs import token_logprobs

from .conftest import (
    IMAGE_TOKEN,
    VIDEO_TOKEN,
    hf_logits,
    media_tokens,
    process_images,
    random_image,
    video_pixel_values,
)

ATOL = 1e-4


def _prompt(media, kinds, text=(11, 12, 13)):
    """Token ids for `kinds` (e.g. ['img_a', 'video']) separated by text, plus media kwargs."""
    ids = [1, 2]
    images, image_grids, videos, video_grids = [], [], [], []
    for kind in kinds:
        pv, grid = media[kind]
        is_video = kind == "video"
        ids += media_tokens(grid[0], VIDEO_TOKEN if is_video else IMAGE_TOKEN) + [7]
        (videos if is_video else images).append(pv)
        (video_grids if is_video else image_grids).append(grid)
    ids += list(text)
    kw = {}
    if images:
        kw["pixel_values"] = np.concatenate(images)
        kw["image_grid_thw"] = np.concatenate(image_grids)
    if videos:
        kw["pixel_values_videos"] = np.concatenate(videos)
        kw["video_grid_thw"] = np.concatenate(video_grids)
        kw["second_per_grid_ts"] = np.asarray([1.0] * len(videos), np.float32)
    return np.asarray([ids]), kw


def _jax_logits(model, ids, mask=None, **kw):
    kw = {k: (jnp.asarray(v) if k.startswith("pixel") else v) for k, v in kw.items()}
    m = None if mask is None else jnp.asarray(mask)
    return np.asarray(model(jnp.asarray(ids), attention_mask=m, **kw))


CASES = {
    "text_only": [],
    "one_image": ["img_a"],
    "two_images_different_sizes": ["img_a", "img_b"],
    "video_grid_t_3": ["video"],
    "image_and_video": ["img_b", "video"],
}


@pytest.mark.parametrize("case", list(CASES))
def test_logits_match_transformers(hf_model, jax_model, media, case):
    ids, kw = _prompt(media, CASES[case])
    ref = hf_logits(hf_model, ids, **kw)
    out = _jax_logits(jax_model, ids, **kw)
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, atol=ATOL, rtol=0)


def _left_padded(media):
    rows, images, grids = [], [], []
    for kind, text in [("img_a", [5, 6, 7, 8]), ("img_b", [9])]:
        pv, grid = media[kind]
        rows.append([1] + media_tokens(grid[0], IMAGE_TOKEN) + text)
        images.append(pv)
        grids.append(grid)
    length = max(map(len, rows))
    ids = np.zeros((2, length), np.int64)
    mask = np.zeros((2, length), np.int64)
    for r, row in enumerate(rows):
        ids[r, length - len(row) :] = row
        mask[r, length - len(row) :] = 1
    return (
        ids,
        mask,
        dict(pixel_values=np.concatenate(images), image_grid_thw=np.concatenate(grids)),
    )


def test_left_padded_batch_matches_transformers(hf_model, jax_model, media):
    ids, mask, kw = _left_padded(media)
    ref = hf_logits(hf_model, ids, mask, **kw)
    out = _jax_logits(jax_model, ids, mask, **kw)
    valid = mask.astype(bool)
    np.testing.assert_allclose(out[valid], ref[valid], atol=ATOL, rtol=0)


def test_completion_log_probs_match_transformers(hf_model, jax_model, media):
    """Per-token log-probs of a completion after an image + video prompt (GRPO's quantity)."""
    completion = [21, 22, 23, 24, 25, 26]
    ids, kw = _prompt(media, ["img_b", "video"], text=[11, 12] + completion)
    ref = hf_logits(hf_model, ids, **kw)
    out = _jax_logits(jax_model, ids, **kw)
    start = ids.shape[1] - len(completion)
    targets = jnp.asarray(ids[:, start:])
    lp = np.asarray(token_logprobs(jnp.asarray(out[:, start - 1 : -1]), targets))
    lp_ref = np.asarray(token_logprobs(jnp.asarray(ref[:, start - 1 : -1]), targets))
    np.testing.assert_allclose(lp, lp_ref, atol=ATOL, rtol=0)


def test_jitted_forward_with_host_inputs_equals_eager(jax_model, media):
    ids, kw = _prompt(media, ["img_a", "video"])
    cfg = jax_model.config
    pos, _ = get_rope_index(
        ids, kw["image_grid_thw"], kw["video_grid_thw"], kw["second_per_grid_ts"], config=cfg
    )
    img_layout = vision_layout(kw["image_grid_thw"], cfg.vision)
    vid_layout = vision_layout(kw["video_grid_thw"], cfg.vision)

    @jax.jit
    def forward(model, ids, pv, pvv, pos, img_layout, vid_layout):
        return model(
            ids,
            pixel_values=pv,
            pixel_values_videos=pvv,
            position_ids=pos,
            image_layout=img_layout,
            video_layout=vid_layout,
        )

    jitted = forward(
        jax_model,
        jnp.asarray(ids),
        jnp.asarray(kw["pixel_values"]),
        jnp.asarray(kw["pixel_values_videos"]),
        jnp.asarray(pos),
        img_layout,
        vid_layout,
    )
    eager = _jax_logits(jax_model, ids, **kw)
    np.testing.assert_allclose(np.asarray(jitted), eager, atol=1e-5, rtol=0)


def test_grids_under_jit_without_layout_is_a_clear_error(jax_model, media):
    pv, grid = media["img_a"]

    @jax.jit
    def f(model, pv, grid):
        return model.get_image_features(pv, grid)

    with pytest.raises(ValueError, match="needed on host"):
        f(jax_model, jnp.asarray(pv), jnp.asarray(grid))


def test_prefill_then_decode_equals_full_forward(jax_model, media):
    """Left-padded multimodal prefill into a preallocated cache, then 3 single-token steps."""
    ids, mask, kw = _left_padded(media)
    new_tokens = np.asarray([[31, 32, 33], [41, 42, 43]])
    cfg = jax_model.config
    full_ids = np.concatenate([ids, new_tokens], axis=1)
    full_mask = np.concatenate([mask, np.ones_like(new_tokens)], axis=1)
    full = _jax_logits(jax_model, full_ids, full_mask, **kw)

    pos, _ = get_rope_index(ids, kw["image_grid_thw"], None, None, mask, config=cfg)
    # a generated token's position: what the whole sequence's get_rope_index gives it
    full_pos, _ = get_rope_index(full_ids, kw["image_grid_thw"], None, None, full_mask, config=cfg)
    embeds = jax_model.embed_and_merge(
        jnp.asarray(ids), jnp.asarray(kw["pixel_values"]), kw["image_grid_thw"]
    )
    cache = KVCache.create(cfg.text, batch_size=2, max_length=full_ids.shape[1] + 2)
    step = jax.jit(lambda m, e, p, a, c: m.decode(e, p, a, c))
    logits, cache = step(jax_model, embeds, jnp.asarray(pos), jnp.asarray(mask), cache)
    valid = mask.astype(bool)
    np.testing.assert_allclose(
        np.asarray(logits)[valid], full[:, : ids.shape[1]][valid], atol=1e-5, rtol=0
    )
    for k in range(new_tokens.shape[1]):
        tok = jnp.asarray(new_tokens[:, k : k + 1])
        pos_k = jnp.asarray(full_pos[:, :, ids.shape[1] + k : ids.shape[1] + k + 1])
        e = jax_model.language_model.embed_tokens(tok)
        logits, cache = step(jax_model, e, pos_k, jnp.ones((2, 1), jnp.int32), cache)
        np.testing.assert_allclose(
            np.asarray(logits)[:, 0], full[:, ids.shape[1] + k], atol=1e-5, rtol=0
        )
    assert int(cache.index) == full_ids.shape[1]


def test_video_pixel_helper_matches_image_processor_for_static_frames(image_processor):
    """The test helper's video rows reduce to the image processor's rows for a still frame."""
    frame = random_image(np.random.default_rng(5), 84, 112)
    video, vgrid = video_pixel_values(image_processor, [frame, frame])
    image, igrid = process_images(image_processor, [frame])
    np.testing.assert_array_equal(vgrid, igrid)
    np.testing.assert_array_equal(video, image)


def test_bf16_deviation_is_reported(hf_dir, hf_model, jax_model, media):
    """Item 7: bf16 weights + compute vs fp32, printed (run with -s), next to transformers' own
    bf16 deviation on the same inputs. The bound only catches gross breakage (it is 4x HF's own
    bf16 error)."""
    import torch

    ids, kw = _prompt(media, ["img_b", "video"])
    ref32 = _jax_logits(jax_model, ids, **kw)
    bf16_model = from_pretrained(hf_dir[1], dtype=jnp.bfloat16)
    ours = _jax_logits(bf16_model, ids, **kw).astype(np.float32)
    hf_bf16 = copy.deepcopy(hf_model).to(torch.bfloat16)  # never round the shared fixture
    kw_bf = {k: (v.astype(np.float32) if k.startswith("pixel") else v) for k, v in kw.items()}
    theirs = hf_logits(hf_bf16, ids, **kw_bf)
    dev_ours = np.abs(ours - ref32)
    dev_hf = np.abs(theirs - ref32)
    scale = np.abs(ref32).max()
    agree = (ours.argmax(-1) == ref32.argmax(-1)).mean()
    print(
        f"\n[bf16 vs fp32] jaxseg: max|d|={dev_ours.max():.4g} mean|d|={dev_ours.mean():.4g}; "
        f"transformers: max|d|={dev_hf.max():.4g} mean|d|={dev_hf.mean():.4g}; "
        f"max|logit|={scale:.3g}; jaxseg argmax agreement={agree:.3f}"
    )
    assert np.isfinite(ours).all()
    assert dev_ours.max() <= 4 * dev_hf.max() + 1e-3


def test_text_only_left_padded_batch_matches_transformers(hf_model, jax_model):
    ids = np.asarray([[0, 0, 0, 5, 6, 7, 8], [9, 10, 11, 12, 13, 14, 15]])
    mask = (np.arange(7)[None] >= np.asarray([[3], [0]])).astype(np.int64)
    ref = hf_logits(hf_model, ids, mask)
    out = _jax_logits(jax_model, ids, mask)
    valid = mask.astype(bool)
    np.testing.assert_allclose(out[valid], ref[valid], atol=ATOL, rtol=0)


def test_captured_attention_equals_transformers_attentions(hf_model, jax_model, media):
    """`attention_capture` (head 1 of the last layer, a left-padded batch with images) records
    what transformers' eager attention returns with `output_attentions`."""
    import torch

    from jaxseg.models.family import attention_capture, with_attention

    ids, mask, kw = _left_padded(media)
    ids_t = torch.tensor(ids)
    with torch.no_grad():
        ref = (
            hf_model(
                input_ids=ids_t,
                attention_mask=torch.tensor(mask),
                mm_token_type_ids=(ids_t == IMAGE_TOKEN).long(),
                pixel_values=torch.tensor(kw["pixel_values"]),
                image_grid_thw=torch.tensor(kw["image_grid_thw"]),
                output_attentions=True,
            )
            .attentions[-1][:, 1]
            .numpy()
        )
    with attention_capture(jax_model, layer=-1, head=1):
        _, probs = with_attention(lambda m: _jax_logits(m, ids, mask, **kw), jax_model)
    valid = mask.astype(bool)
    np.testing.assert_allclose(np.asarray(probs)[valid], ref[valid], atol=1e-5, rtol=0)
