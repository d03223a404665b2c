"""Shared fixtures: a tiny random transformers Qwen3-VL (eager attention, fp32) saved once per
session, the jaxseg model loaded from it, and prompt builders in the layout transformers'
Qwen3VLProcessor writes (a video is one placeholder run per temporal patch, each behind a
"<t seconds>" text timestamp and its own vision_start/end)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import importlib.util

import hf_tiny
import jax
import numpy as np
import pytest

if importlib.util.find_spec("torch") is None or importlib.util.find_spec("transformers") is None:
    collect_ignore_glob = ["test_*.py"]

jax.config.update("jax_default_matmul_precision", "highest")

IMAGE, VIDEO, VS, VE = 290, 291, 292, 293
VOCAB = 300
IDS = dict(
    image_token_id=IMAGE, video_token_id=VIDEO, vision_start_token_id=VS, vision_end_token_id=VE
)
PATCH_DIM = 3 * 2 * 16 * 16
TIMESTAMP = [40, 41, 42]  # stands for the text "<0.5 seconds>"


def hf_config(**kw):
    return hf_tiny.tiny_hf_qwen3_config(vocab=VOCAB, ids=IDS, **kw)


@pytest.fixture(scope="session")
def hf_dir(tmp_path_factory):
    """(HF model, directory it was saved to)."""
    model = hf_tiny.build_hf_qwen3(hf_config(), 0)
    path = tmp_path_factory.mktemp("qwen3_tiny")
    model.save_pretrained(path)
    return model, path


@pytest.fixture(scope="session")
def hf_model(hf_dir):
    return hf_dir[0]


@pytest.fixture(scope="session")
def jax_model(hf_dir):
    from jaxseg.models.qwen3_vl import from_pretrained

    return from_pretrained(hf_dir[1])


def pixels(seed: int, grid) -> np.ndarray:
    n = int(np.prod(grid))
    return np.random.default_rng(seed).standard_normal((n, PATCH_DIM)).astype(np.float32)


def image_tokens(grid) -> list[int]:
    t, h, w = grid
    return [VS] + [IMAGE] * (t * h * w // 4) + [VE]


def video_tokens(grid) -> list[int]:
    """Per temporal patch: timestamp text, vision_start, its placeholders, vision_end."""
    t, h, w = grid
    out: list[int] = []
    for _ in range(t):
        out += TIMESTAMP + [VS] + [VIDEO] * (h * w // 4) + [VE]
    return out
