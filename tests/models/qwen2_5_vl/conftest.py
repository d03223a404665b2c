"""Shared fixtures: a tiny random transformers Qwen2.5-VL (eager attention, fp32) saved to a
temporary directory once per session, the jaxseg model loaded from it, and inputs produced by
transformers' own image processor.

Tiny config chosen to exercise the awkward paths: vision depth 4 with the full-attention block
in the middle (index 1), window 112 px = 4x4 merged tokens, and image/video grids whose merged
sizes (5x7, 3x4, 4x6) are not multiples of the window.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import importlib.util

import hf_tiny
import jax
import numpy as np
import pytest

# transformers + torch are the parity oracle (the `torch` extra); without them skip this folder.
if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
    collect_ignore_glob = ["test_*.py"]

jax.config.update("jax_default_matmul_precision", "highest")

IMAGE_TOKEN, VIDEO_TOKEN, VISION_START, VISION_END = 290, 291, 292, 293
VOCAB = 300


def tiny_hf_config(tie_word_embeddings: bool = False, fullatt=(1,)):
    return hf_tiny.tiny_hf_config(
        vocab=VOCAB,
        ids=dict(
            image_token_id=IMAGE_TOKEN,
            video_token_id=VIDEO_TOKEN,
            vision_start_token_id=VISION_START,
            vision_end_token_id=VISION_END,
        ),
        fullatt=fullatt,
        tie_word_embeddings=tie_word_embeddings,
    )


def build_hf(seed: int = 0, **kw):
    return hf_tiny.build_hf(tiny_hf_config(**kw), seed)


@pytest.fixture(scope="session")
def hf_dir(tmp_path_factory):
    """(HF model, directory it was saved to)."""
    model = build_hf(0)
    path = tmp_path_factory.mktemp("qwen_tiny")
    model.save_pretrained(path)
    return model, path


@pytest.fixture(scope="session")
def hf_model(hf_dir):
    return hf_dir[0]


@pytest.fixture(scope="session")
def jax_model(hf_dir):
    from jaxseg.models.qwen2_5_vl import from_pretrained

    return from_pretrained(hf_dir[1])


@pytest.fixture(scope="session")
def image_processor():
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )

    return Qwen2VLImageProcessorPil()


def random_image(rng, h, w):
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def process_images(processor, images):
    out = processor(images=images, return_tensors="np")
    return out["pixel_values"].astype(np.float32), out["image_grid_thw"]


def video_pixel_values(processor, frames, temporal_patch_size: int = 2):
    """Video rows in the layout of transformers' Qwen2VLVideoProcessor.

    That processor needs torchvision (not installed here), so frames go through the image
    processor one at a time (same resize / rescale / CLIP normalisation / spatial patch order;
    each image row is (C, T, P, P) with the frame repeated over T) and consecutive frames are
    stacked along T, which is `patchify`'s permute (B, t, h/m, w/m, m, m, C, T, P, P)
    (video_processing_qwen2_vl.py). Returns (pixel_values_videos, video_grid_thw [1, 3])."""
    if len(frames) % temporal_patch_size:
        frames = list(frames) + [frames[-1]] * (-len(frames) % temporal_patch_size)
    per_frame = []
    grid = None
    for frame in frames:
        pv, g = process_images(processor, [frame])
        grid = g[0]
        c = 3
        p = int(round((pv.shape[1] / (c * temporal_patch_size)) ** 0.5))
        per_frame.append(pv.reshape(pv.shape[0], c, temporal_patch_size, p, p)[:, :, 0])
    groups = []
    for t in range(0, len(per_frame), temporal_patch_size):
        stacked = np.stack(per_frame[t : t + temporal_patch_size], axis=2)  # [N, C, T, P, P]
        groups.append(stacked.reshape(stacked.shape[0], -1))
    grid_t = len(per_frame) // temporal_patch_size
    return np.concatenate(groups, axis=0), np.array([[grid_t, grid[1], grid[2]]])


def media_tokens(grid_thw, token_id: int) -> list[int]:
    """<|vision_start|> placeholder * (t*h*w/4) <|vision_end|>, as the chat template emits."""
    t, h, w = (int(x) for x in grid_thw)
    return [VISION_START] + [token_id] * (t * h * w // 4) + [VISION_END]


def hf_logits(model, input_ids, attention_mask=None, **media):
    """transformers logits (eager, fp32); mm_token_type_ids as its processor returns them."""
    import torch

    ids = torch.tensor(np.asarray(input_ids))
    types = (ids == IMAGE_TOKEN).long() + 2 * (ids == VIDEO_TOKEN).long()
    kwargs = {k: torch.tensor(np.asarray(v)) for k, v in media.items() if v is not None}
    if attention_mask is not None:
        kwargs["attention_mask"] = torch.tensor(np.asarray(attention_mask))
    with torch.no_grad():
        return model(input_ids=ids, mm_token_type_ids=types, **kwargs).logits.float().numpy()


@pytest.fixture(scope="session")
def media(image_processor):
    """Processed images and a video with merged grids that are not multiples of the window."""
    rng = np.random.default_rng(123)
    img_a = process_images(image_processor, [random_image(rng, 140, 196)])  # grid 1x10x14
    img_b = process_images(image_processor, [random_image(rng, 84, 112)])  # grid 1x6x8
    frames = [random_image(rng, 112, 168) for _ in range(6)]  # grid 3x8x12
    video = video_pixel_values(image_processor, frames)
    return {"img_a": img_a, "img_b": img_b, "video": video}
