"""prepare_inputs: processor outputs -> static-shape host arrays for the jitted forward."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxseg.models.qwen2_5_vl import prepare_inputs

from .conftest import IMAGE_TOKEN, VIDEO_TOKEN, hf_logits, media_tokens


def test_padded_batch_through_jit_matches_transformers(hf_model, jax_model, media):
    """Image + video prompt, vision inputs padded to bucket sizes, one jitted call."""
    img, img_grid = media["img_b"]
    vid, vid_grid = media["video"]
    ids = np.asarray(
        [
            [1]
            + media_tokens(img_grid[0], IMAGE_TOKEN)
            + [2]
            + media_tokens(vid_grid[0], VIDEO_TOKEN)
            + [3]
        ]
    )
    batch = {
        "input_ids": ids,
        "attention_mask": np.ones_like(ids),
        "pixel_values": img,
        "image_grid_thw": img_grid,
        "pixel_values_videos": vid,
        "video_grid_thw": vid_grid,
        "second_per_grid_ts": [1.0],
    }
    host = prepare_inputs(batch, jax_model.config, image_pad_to=64, video_pad_to=320)
    assert host["pixel_values"].shape[0] == 64 and host["pixel_values_videos"].shape[0] == 320
    host.pop("rope_deltas")
    forward = jax.jit(lambda model, kw: model(**kw))
    out = np.asarray(forward(jax_model, jax.tree.map(jnp.asarray, host)))
    ref = hf_logits(
        hf_model,
        ids,
        pixel_values=img,
        image_grid_thw=img_grid,
        pixel_values_videos=vid,
        video_grid_thw=vid_grid,
        second_per_grid_ts=np.asarray([1.0], np.float32),
    )
    np.testing.assert_allclose(out, ref, atol=1e-4, rtol=0)
