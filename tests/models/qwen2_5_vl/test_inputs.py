"""The host encoder (jaxseg.models.inputs through the sampler's `assemble_segment`): an image +
video prompt, left-padded and with its media padded to buckets, through one jitted forward,
equals transformers on the unpadded prompt."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxseg.models.inputs import Prompt
from jaxseg.sampling import History, assemble_segment

from .conftest import IMAGE_TOKEN, VIDEO_TOKEN, hf_logits, media_tokens


def test_padded_batch_through_jit_matches_transformers(hf_model, jax_model, media):
    img, img_grid = media["img_b"]
    vid, vid_grid = media["video"]
    ids = (
        [1]
        + media_tokens(img_grid[0], IMAGE_TOKEN)
        + [2]
        + media_tokens(vid_grid[0], VIDEO_TOKEN)
        + [3]
    )
    prompt = Prompt(ids, img, img_grid, vid, vid_grid, [1.0])
    batch, _, _ = assemble_segment([History()], [prompt], jax_model.config, patch_buckets=[320])
    assert batch.pixel_values.shape[0] == batch.pixel_values_videos.shape[0] == 320
    assert batch.input_ids.shape[1] > len(ids)  # left padding to the length bucket
    kw = {
        "attention_mask": batch.attention_mask,
        "position_ids": batch.position_ids,
        "pixel_values": batch.pixel_values,
        "image_layout": batch.image_layout,
        "pixel_values_videos": batch.pixel_values_videos,
        "video_layout": batch.video_layout,
    }
    forward = jax.jit(lambda model, ids, kw: model(ids, **kw))
    out = np.asarray(
        forward(jax_model, jnp.asarray(batch.input_ids), jax.tree.map(jnp.asarray, kw))
    )
    ref = hf_logits(
        hf_model,
        np.asarray([ids]),
        pixel_values=img,
        image_grid_thw=img_grid,
        pixel_values_videos=vid,
        video_grid_thw=vid_grid,
        second_per_grid_ts=np.asarray([1.0], np.float32),
    )
    np.testing.assert_allclose(out[:, -len(ids) :], ref, atol=1e-4, rtol=0)
