"""A synthetic policy example shared by the training-step tests."""

import numpy as np


def example(rng, n_text, with_image, cfg, *, text_high=50):
    """[text][vs img*4 ve][text], the last half as policy tokens; text ids in [1, text_high)."""
    ex = {}
    text = rng.integers(1, text_high, n_text)
    if with_image:
        image = [cfg.vision_start_token_id, *[cfg.image_token_id] * 4, cfg.vision_end_token_id]
        ids = np.concatenate([text[: n_text // 2], image, text[n_text // 2 :]])
        ex["pixel_values"] = rng.normal(size=(16, cfg.vision.patch_dim)).astype(np.float32)
        ex["image_grid_thw"] = np.array([[1, 4, 4]])  # 16 patches -> 4 merged tokens
    else:
        ids = text
    mask = np.zeros(ids.size, np.float32)
    mask[ids.size // 2 :] = 1
    return dict(ex, input_ids=ids, policy_mask=mask)
