"""Fixtures for the sampler tests: the project's synthetic tokenizer (protocol corpus only, so
it builds in a second), a tiny random transformers Qwen2.5-VL whose vocabulary and special ids
are that tokenizer's (eager attention, fp32), the jaxseg model loaded from its saved weights,
and random pixel inputs in the processor's `[N, C*T*P*P]` layout (the values are arbitrary
for parity tests; only the grids matter for positions).

The config is tests/hf_tiny.py's with vision depth 2 (one full-attention block). The video
has tokens_per_second=2 and 4 temporal grids, so its scaled temporal ids (0, 2, 4, 6) run
past its spatial extent (3): the M-RoPE case where the position after the video is not
max + 1.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import hf_tiny
import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

jax.config.update("jax_default_matmul_precision", "highest")

PATCH_DIM = 3 * 2 * 14 * 14


@pytest.fixture(scope="session")
def tokenizer():
    from jaxseg.data.tokenizer import build_tokenizer, protocol_corpus

    return build_tokenizer(texts=protocol_corpus())


@pytest.fixture(scope="session")
def special(tokenizer):
    from jaxseg.data.tokenizer import special_token_ids

    return special_token_ids(tokenizer)


def build_hf(vocab: int, special: dict, seed: int = 0):
    model = hf_tiny.build_hf(hf_tiny.tiny_hf_config(vocab=vocab, ids=special, vision_depth=2), seed)
    with torch.no_grad():
        # A sharper output distribution than random init gives, so greedy parity is not decided
        # by float noise between near-tied logits.
        model.lm_head.weight.mul_(8.0)
    return model


@pytest.fixture(scope="session")
def hf_dir(tmp_path_factory, tokenizer, special):
    model = build_hf(len(tokenizer), special)
    path = tmp_path_factory.mktemp("qwen_tiny_sampler")
    model.save_pretrained(path)
    return model, path


@pytest.fixture(scope="session")
def hf_model(hf_dir):
    return hf_dir[0]


@pytest.fixture(scope="session")
def jax_model(hf_dir):
    from jaxseg.models.qwen2_5_vl import from_pretrained

    return from_pretrained(hf_dir[1])


def pixels(rng, grid):
    n = int(np.prod(grid))
    return rng.standard_normal((n, PATCH_DIM)).astype(np.float32)


@pytest.fixture(scope="session")
def media():
    """(pixel_values, grid_thw [1, 3]) for two images and one 8-frame video."""
    rng = np.random.default_rng(7)
    grids = {"img_a": (1, 4, 6), "img_b": (1, 6, 4), "video": (4, 4, 6)}
    return {k: (pixels(rng, g), np.asarray([g])) for k, g in grids.items()}


def media_tokens(grid, token_id: int, special) -> list[int]:
    t, h, w = (int(x) for x in np.asarray(grid).reshape(3))
    return (
        [special["vision_start_token_id"]]
        + [token_id] * (t * h * w // 4)
        + [special["vision_end_token_id"]]
    )
