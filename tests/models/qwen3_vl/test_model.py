"""Qwen3-VL against transformers' `Qwen3VLForConditionalGeneration` (fp32, highest matmul
precision, eager attention): logits, M-RoPE positions, DeepStack on and off, weights in/out."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from jaxseg.models.family import family_of, get_family, load_pretrained, save_pretrained
from jaxseg.models.hf_weights import WeightsError
from jaxseg.models.qwen3_vl import Qwen3VLConfig, from_pretrained, get_rope_index

from .conftest import (
    IMAGE,
    TIMESTAMP,
    VE,
    VIDEO,
    VS,
    hf_config,
    image_tokens,
    pixels,
    video_tokens,
)

ATOL = 1e-4
G_A, G_B, G_V = (1, 4, 6), (1, 6, 4), (3, 4, 4)


def left_pad(rows, pad=0):
    length = max(len(r) for r in rows)
    ids = np.full((len(rows), length), pad, np.int64)
    mask = np.zeros((len(rows), length), np.int64)
    for b, r in enumerate(rows):
        ids[b, length - len(r) :], mask[b, length - len(r) :] = r, 1
    return ids, mask


def hf_forward(model, ids, mask, images=(), videos=()):
    """transformers logits, passing mm_token_type_ids (without them it falls back to 1-D)."""
    ids_t = torch.tensor(ids)
    kw = dict(
        input_ids=ids_t,
        attention_mask=torch.tensor(mask),
        mm_token_type_ids=(ids_t == IMAGE).long() + 2 * (ids_t == VIDEO).long(),
    )
    if images:
        kw["pixel_values"] = torch.tensor(np.concatenate([p for p, _ in images]))
        kw["image_grid_thw"] = torch.tensor([g for _, g in images])
    if videos:
        kw["pixel_values_videos"] = torch.tensor(np.concatenate([p for p, _ in videos]))
        kw["video_grid_thw"] = torch.tensor([g for _, g in videos])
    with torch.no_grad():
        return model(**kw).logits.numpy()


def jax_forward(model, ids, mask, images=(), videos=()):
    kw = {}
    if images:
        kw["pixel_values"] = np.concatenate([p for p, _ in images])
        kw["image_grid_thw"] = np.asarray([g for _, g in images])
    if videos:
        kw["pixel_values_videos"] = np.concatenate([p for p, _ in videos])
        kw["video_grid_thw"] = np.asarray([g for _, g in videos])
    return np.asarray(model(ids, attention_mask=mask, **kw))


def cases():
    a, b, v = (pixels(1, G_A), G_A), (pixels(2, G_B), G_B), (pixels(3, G_V), G_V)
    return {
        "text": ([[5, 6, 7, 8, 9], [10, 11, 12]], (), ()),
        "one_image": ([[5, 6] + image_tokens(G_A) + [7, 8]], (a,), ()),
        "two_images_of_different_sizes": (
            [[5] + image_tokens(G_A) + [6, 7] + image_tokens(G_B) + [8]],
            (a, b),
            (),
        ),
        "video_with_timestamps": ([[5, 6] + video_tokens(G_V) + [7, 8, 9]], (), (v,)),
        "image_and_video_left_padded_batch": (
            [
                [5] + image_tokens(G_A) + [6] + video_tokens(G_V) + [7],
                [8, 9] + image_tokens(G_B) + [10],
            ],
            (a, b),
            (v,),
        ),
    }


@pytest.mark.parametrize("name", list(cases()))
def test_logits_match_transformers(jax_model, hf_model, name):
    rows, images, videos = cases()[name]
    ids, mask = left_pad(rows)
    ref = hf_forward(hf_model, ids, mask, images, videos)
    out = jax_forward(jax_model, ids, mask, images, videos)
    valid = mask.astype(bool)
    np.testing.assert_allclose(out[valid], ref[valid], atol=ATOL, rtol=0)


@pytest.mark.parametrize("name", list(cases()))
def test_rope_index_equals_transformers(jax_model, hf_model, name):
    rows, images, videos = cases()[name]
    ids, mask = left_pad(rows)
    ids_t = torch.tensor(ids)
    igrid = np.asarray([g for _, g in images]) if images else None
    vgrid = np.asarray([g for _, g in videos]) if videos else None
    ref_pos, ref_delta = hf_model.model.get_rope_index(
        ids_t,
        mm_token_type_ids=(ids_t == IMAGE).long() + 2 * (ids_t == VIDEO).long(),
        image_grid_thw=None if igrid is None else torch.tensor(igrid),
        video_grid_thw=None if vgrid is None else torch.tensor(vgrid),
        attention_mask=torch.tensor(mask),
    )
    pos, delta = get_rope_index(ids, igrid, vgrid, None, mask, config=jax_model.config)
    np.testing.assert_array_equal(pos, ref_pos.numpy())
    np.testing.assert_array_equal(delta, ref_delta.numpy())


@pytest.mark.parametrize("deepstack", [(), (1,), (0, 1, 2)], ids=["off", "one", "every_block"])
def test_deepstack_on_and_off(tmp_path, deepstack):
    import hf_tiny

    hf = hf_tiny.build_hf_qwen3(hf_config(deepstack=deepstack), seed=3)
    hf.save_pretrained(tmp_path)
    model = from_pretrained(tmp_path)
    assert model.config.vision.deepstack_visual_indexes == deepstack
    rows, images, videos = cases()["image_and_video_left_padded_batch"]
    ids, mask = left_pad(rows)
    valid = mask.astype(bool)
    ref = hf_forward(hf, ids, mask, images, videos)
    out = jax_forward(model, ids, mask, images, videos)
    np.testing.assert_allclose(out[valid], ref[valid], atol=ATOL, rtol=0)


def test_patch_8_merged_4x4_matches_transformers(tmp_path):
    """A tower of 8 px patches merged 4x4 (each merged token covers the 32 px it covers at
    patch 16 merged 2x2): logits and M-RoPE positions equal transformers' for an image and a
    video, left-padded in one batch, and the weights round-trip."""
    import hf_tiny

    hf = hf_tiny.build_hf_qwen3(hf_config(patch_size=8, spatial_merge_size=4), seed=5)
    hf.save_pretrained(tmp_path)
    model = from_pretrained(tmp_path)
    assert (model.config.vision.patch_size, model.config.vision.spatial_merge_size) == (8, 4)
    dim = 3 * 2 * 8 * 8
    rng = np.random.default_rng(0)
    g_i, g_v = (1, 8, 12), (2, 8, 8)
    image = (rng.standard_normal((int(np.prod(g_i)), dim)).astype(np.float32), g_i)
    video = (rng.standard_normal((int(np.prod(g_v)), dim)).astype(np.float32), g_v)
    video_run = []
    for _ in range(g_v[0]):
        video_run += TIMESTAMP + [VS] + [VIDEO] * (g_v[1] * g_v[2] // 16) + [VE]
    rows = [
        [5] + [VS] + [IMAGE] * (g_i[1] * g_i[2] // 16) + [VE] + [6] + video_run + [7],
        [8, 9, 10],
    ]
    ids, mask = left_pad(rows)
    valid = mask.astype(bool)
    ref = hf_forward(hf, ids, mask, (image,), (video,))
    out = jax_forward(model, ids, mask, (image,), (video,))
    np.testing.assert_allclose(out[valid], ref[valid], atol=ATOL, rtol=0)
    save_pretrained(model, tmp_path / "out")
    again = from_pretrained(tmp_path / "out")
    np.testing.assert_array_equal(jax_forward(again, ids, mask, (image,), (video,)), out)


def test_deepstack_features_change_the_logits(hf_dir, jax_model):
    """Zeroing the DeepStack mergers' output projection changes the visual prompt's logits:
    the features really enter the decoder."""
    rows, images, _ = cases()["one_image"]
    ids, mask = left_pad(rows)
    before = jax_forward(jax_model, ids, mask, images)
    model = from_pretrained(hf_dir[1])  # a copy: the session model stays intact
    for merger in model.visual.deepstack_merger_list:
        merger.linear_fc2.kernel.set_value(merger.linear_fc2.kernel[...] * 0)
        merger.linear_fc2.bias.set_value(merger.linear_fc2.bias[...] * 0)
    after = jax_forward(model, ids, mask, images)
    assert np.abs(before - after).max() > 1e-3


def test_config_round_trip_and_family(hf_dir):
    cfg = Qwen3VLConfig.from_json_file(hf_dir[1])
    assert Qwen3VLConfig.from_hf_dict(cfg.to_hf_dict()) == cfg
    assert family_of(cfg) is get_family("qwen3_vl")
    assert cfg.vision.num_grid_per_side == 6 and cfg.text.head_dim == 16


def test_save_pretrained_round_trip_loads_in_transformers(jax_model, hf_model, tmp_path):
    from transformers import Qwen3VLForConditionalGeneration

    save_pretrained(jax_model, tmp_path)
    reloaded = Qwen3VLForConditionalGeneration.from_pretrained(tmp_path).eval()
    ours = load_pretrained(tmp_path)
    rows, images, videos = cases()["image_and_video_left_padded_batch"]
    ids, mask = left_pad(rows)
    valid = mask.astype(bool)
    ref = hf_forward(hf_model, ids, mask, images, videos)
    np.testing.assert_allclose(
        hf_forward(reloaded, ids, mask, images, videos)[valid], ref[valid], atol=1e-5, rtol=0
    )
    np.testing.assert_allclose(
        jax_forward(ours, ids, mask, images, videos)[valid], ref[valid], atol=ATOL, rtol=0
    )
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == ["Qwen3VLForConditionalGeneration"]


def test_weights_errors_name_the_tensor(hf_dir, tmp_path):
    from safetensors.numpy import load_file, save_file

    tensors = load_file(hf_dir[1] / "model.safetensors")
    (tmp_path / "config.json").write_text((hf_dir[1] / "config.json").read_text())
    missing = {k: v for k, v in tensors.items() if "pos_embed" not in k}
    save_file(missing, tmp_path / "model.safetensors")
    with pytest.raises(WeightsError, match="pos_embed"):
        from_pretrained(tmp_path)
    bad = dict(tensors)
    bad["model.visual.deepstack_merger_list.0.norm.weight"] = np.zeros(3, np.float32)
    save_file(bad, tmp_path / "model.safetensors")
    with pytest.raises(WeightsError, match="deepstack_merger_list.0.norm.weight"):
        from_pretrained(tmp_path)
    extra = dict(tensors, **{"model.visual.extra.weight": np.zeros(3, np.float32)})
    save_file(extra, tmp_path / "model.safetensors")
    with pytest.raises(WeightsError, match="model.visual.extra.weight"):
        from_pretrained(tmp_path)


def test_parameter_count_equals_transformers(hf_model, jax_model):
    from flax import nnx

    ours = sum(int(np.prod(v.shape)) for _, v in nnx.to_flat_state(nnx.state(jax_model, nnx.Param)))
    assert ours == sum(p.numel() for p in hf_model.parameters())


@pytest.mark.parametrize("head", [0, 3])
def test_captured_attention_equals_transformers_attentions(jax_model, hf_model, head):
    """`attention_capture` records exactly the probabilities transformers' eager attention
    returns (`output_attentions`) for that head of the last layer, on a left-padded batch
    with images and a video; and the model carries nothing after the block."""
    from flax import nnx

    from jaxseg.models.family import attention_capture, with_attention

    rows, images, videos = cases()["image_and_video_left_padded_batch"]
    ids, mask = left_pad(rows)
    ids_t = torch.tensor(ids)
    with torch.no_grad():
        ref = (
            hf_model(
                input_ids=ids_t,
                attention_mask=torch.tensor(mask),
                mm_token_type_ids=(ids_t == IMAGE).long() + 2 * (ids_t == VIDEO).long(),
                pixel_values=torch.tensor(np.concatenate([p for p, _ in images])),
                image_grid_thw=torch.tensor([g for _, g in images]),
                pixel_values_videos=torch.tensor(np.concatenate([p for p, _ in videos])),
                video_grid_thw=torch.tensor([g for _, g in videos]),
                output_attentions=True,
            )
            .attentions[-1][:, head]
            .numpy()
        )
    with attention_capture(jax_model, layer=-1, head=head):
        _, probs = with_attention(lambda m: jax_forward(m, ids, mask, images, videos), jax_model)
        probs = np.asarray(probs)
    valid = mask.astype(bool)
    np.testing.assert_allclose(probs[valid], ref[valid], atol=1e-5, rtol=0)
    assert jax_model.language_model.layers[-1].self_attn.capture_head is None
    assert not nnx.to_flat_state(nnx.state(jax_model, nnx.Intermediate))
