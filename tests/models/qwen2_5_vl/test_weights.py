"""HF -> jaxseg -> save_pretrained -> transformers round trip, and loud weight errors."""

from __future__ import annotations

import json
import shutil

import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from jaxseg.models.qwen2_5_vl import WeightsError, from_pretrained, save_pretrained

from .conftest import IMAGE_TOKEN, build_hf, hf_logits, media_tokens


def _inputs(media):
    pv, grid = media["img_b"]
    ids = np.asarray([[1, 2] + media_tokens(grid[0], IMAGE_TOKEN) + [3, 4, 5]])
    return ids, dict(pixel_values=pv, image_grid_thw=grid)


@pytest.mark.parametrize("layout,shard_bytes", [("released", 5 << 30), ("transformers5", 60_000)])
def test_round_trip_through_transformers(tmp_path, hf_model, jax_model, media, layout, shard_bytes):
    from transformers import Qwen2_5_VLForConditionalGeneration

    ref_dir = tmp_path / "ref"
    ref_dir.mkdir()
    (ref_dir / "preprocessor_config.json").write_text('{"patch_size": 14}')
    out = tmp_path / "out"
    files = save_pretrained(jax_model, out, reference_dir=ref_dir, max_shard_bytes=shard_bytes)
    assert (out / "preprocessor_config.json").exists()
    assert (len(files) > 1) == (shard_bytes < 10**6)
    assert (len(files) > 1) == (out / "model.safetensors.index.json").exists()
    reloaded = Qwen2_5_VLForConditionalGeneration.from_pretrained(
        out, attn_implementation="eager"
    ).eval()
    ids, kw = _inputs(media)
    np.testing.assert_array_equal(hf_logits(reloaded, ids, **kw), hf_logits(hf_model, ids, **kw))
    # and jaxseg reads its own output back (sharded index included)
    again = from_pretrained(out)
    logits = np.asarray(
        again(
            jnp.asarray(ids),
            pixel_values=jnp.asarray(kw["pixel_values"]),
            image_grid_thw=kw["image_grid_thw"],
        )
    )
    np.testing.assert_array_equal(
        logits,
        np.asarray(
            jax_model(
                jnp.asarray(ids),
                pixel_values=jnp.asarray(kw["pixel_values"]),
                image_grid_thw=kw["image_grid_thw"],
            )
        ),
    )


def test_tied_embeddings_round_trip(tmp_path, media):
    from transformers import Qwen2_5_VLForConditionalGeneration

    hf = build_hf(1, tie_word_embeddings=True)
    hf.save_pretrained(tmp_path / "hf")
    model = from_pretrained(tmp_path / "hf")
    assert model.lm_head is None
    ids, kw = _inputs(media)
    ref = hf_logits(hf, ids, **kw)
    out = np.asarray(
        model(
            jnp.asarray(ids),
            pixel_values=jnp.asarray(kw["pixel_values"]),
            image_grid_thw=kw["image_grid_thw"],
        )
    )
    np.testing.assert_allclose(out, ref, atol=1e-4, rtol=0)
    save_pretrained(model, tmp_path / "out")
    assert "lm_head.weight" not in load_file(tmp_path / "out" / "model.safetensors")
    back = Qwen2_5_VLForConditionalGeneration.from_pretrained(
        tmp_path / "out", attn_implementation="eager"
    ).eval()
    np.testing.assert_array_equal(hf_logits(back, ids, **kw), ref)


@pytest.fixture
def editable_ckpt(tmp_path, hf_dir):
    """A copy of the tiny checkpoint whose tensors a test may edit."""
    dst = tmp_path / "ckpt"
    shutil.copytree(hf_dir[1], dst)
    tensors = load_file(dst / "model.safetensors")

    def write(t):
        save_file(t, str(dst / "model.safetensors"), metadata={"format": "pt"})
        return dst

    return tensors, write


def test_missing_tensor_is_named(editable_ckpt):
    tensors, write = editable_ckpt
    del tensors["model.layers.1.mlp.up_proj.weight"]
    with pytest.raises(
        WeightsError, match=r"missing tensors: \['model.layers.1.mlp.up_proj.weight'\]"
    ):
        from_pretrained(write(tensors))


def test_unexpected_tensor_is_named(editable_ckpt):
    tensors, write = editable_ckpt
    tensors["model.layers.7.mlp.up_proj.weight"] = tensors["model.layers.1.mlp.up_proj.weight"]
    tensors["visual.extra.weight"] = np.zeros(3, np.float32)
    with pytest.raises(WeightsError, match="model.layers.7.mlp.up_proj.weight.*visual.extra"):
        from_pretrained(write(tensors))


def test_shape_mismatch_is_named(editable_ckpt):
    tensors, write = editable_ckpt
    tensors["visual.blocks.2.attn.qkv.weight"] = np.zeros((96, 31), np.float32)
    with pytest.raises(
        WeightsError, match=r"visual.blocks.2.attn.qkv.weight.*\[96, 31\].*\[96, 32\]"
    ):
        from_pretrained(write(tensors))


def test_lm_head_must_equal_embedding_when_tied(editable_ckpt):
    tensors, write = editable_ckpt
    path = write(tensors)
    cfg = json.loads((path / "config.json").read_text())
    cfg["tie_word_embeddings"] = True
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(WeightsError, match="lm_head.weight' differs"):
        from_pretrained(path)


def test_bf16_checkpoint_loads_in_bf16(tmp_path, jax_model):
    model16 = from_pretrained_bf16(tmp_path, jax_model)
    assert model16.language_model.embed_tokens.embedding[...].dtype == jnp.bfloat16


def from_pretrained_bf16(tmp_path, model):
    save_pretrained(model, tmp_path / "f32")
    tensors = load_file(tmp_path / "f32" / "model.safetensors")
    import ml_dtypes

    save_file(
        {k: v.astype(ml_dtypes.bfloat16) for k, v in tensors.items()},
        str(tmp_path / "f32" / "model.safetensors"),
        metadata={"format": "pt"},
    )
    return from_pretrained(tmp_path / "f32", dtype=jnp.bfloat16)
