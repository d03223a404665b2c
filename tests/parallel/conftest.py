"""Tiny random Qwen2.5-VL (fp32, built in nnx from a config dict: no torch needed here) and a
batch of 8 image+text rows with left padding, shared by the mesh tests.

Parity with transformers is tests/models/qwen2_5_vl's job; here the reference is the same JAX
model run unsharded on one device.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

jax.config.update("jax_default_matmul_precision", "highest")

IMAGE_TOKEN, VIDEO_TOKEN, VISION_START, VISION_END = 290, 291, 292, 293
VOCAB = 300


def tiny_hf_dict() -> dict:
    """Sizes of tests/models/qwen2_5_vl/conftest.py (vocab 300, hidden 64, 4 heads / 2 KV
    heads, vision depth 4 with block 1 full attention), nested transformers-5 layout."""
    return {
        "model_type": "qwen2_5_vl",
        "text_config": {
            "vocab_size": VOCAB,
            "hidden_size": 64,
            "intermediate_size": 96,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            "rms_norm_eps": 1e-6,
            "rope_parameters": {
                "rope_type": "default",
                "mrope_section": [2, 3, 3],
                "rope_theta": 1e4,
            },
        },
        "vision_config": {
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 48,
            "num_heads": 2,
            "out_hidden_size": 64,
            "patch_size": 14,
            "temporal_patch_size": 2,
            "spatial_merge_size": 2,
            "window_size": 112,
            "fullatt_block_indexes": [1],
            "tokens_per_second": 2,
        },
        "image_token_id": IMAGE_TOKEN,
        "video_token_id": VIDEO_TOKEN,
        "vision_start_token_id": VISION_START,
        "vision_end_token_id": VISION_END,
        "tie_word_embeddings": False,
    }


def tiny_config():
    from jaxseg.models.qwen2_5_vl import Qwen2_5_VLConfig

    return Qwen2_5_VLConfig.from_hf_dict(tiny_hf_dict())


def build_model(seed: int = 0):
    """Random weights drawn with numpy into an abstract (`nnx.eval_shape`) model: matrices
    N(0, 0.02) like transformers' init, norms 1 + 0.1 N(0, 1) and biases 0.1 N(0, 1) (so
    they are exercised too). No XLA compile: eager init would compile one program per shape."""
    from jaxseg.models.qwen2_5_vl import Qwen2_5_VLForConditionalGeneration

    model = nnx.eval_shape(
        lambda: Qwen2_5_VLForConditionalGeneration(tiny_config(), rngs=nnx.Rngs(seed))
    )
    rng = np.random.default_rng(seed)
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        name = ".".join(str(p) for p in path)
        noise = rng.standard_normal(var.shape).astype(np.float32)
        if name.endswith("bias"):
            value = 0.1 * noise
        elif "norm" in name or "ln_q" in name:
            value = 1.0 + 0.1 * noise
        else:
            value = 0.02 * noise
        var.set_value(jnp.asarray(value))
    return model


@pytest.fixture(scope="session")
def tiny_model():
    return build_model(0)


@pytest.fixture(scope="session")
def image_batch():
    """8 rows: left padding, text, one 56x84 image (grid 1x4x6 -> 6 placeholder tokens), text.

    Returns numpy arrays: input_ids/attention_mask/completion_mask [8, 24], position_ids
    [3, 8, 24], pixel_values [8*24, 1176], image_grid_thw [8, 3]."""
    from jaxseg.models.qwen2_5_vl import get_rope_index

    cfg = tiny_config()
    rng = np.random.default_rng(7)
    batch, length, grid = 8, 24, (1, 4, 6)
    n_img_tokens = grid[0] * grid[1] * grid[2] // 4
    ids = np.zeros((batch, length), np.int32)
    mask = np.zeros((batch, length), np.int32)
    completion = np.zeros((batch, length), np.float32)
    for b in range(batch):
        pad = b % 4  # 0..3 left-pad slots
        prompt = [int(t) for t in rng.integers(1, 280, 3)]
        row = prompt + [VISION_START] + [IMAGE_TOKEN] * n_img_tokens + [VISION_END]
        answer = [int(t) for t in rng.integers(1, 280, length - pad - len(row))]
        ids[b, pad:] = row + answer
        mask[b, pad:] = 1
        completion[b, pad + len(row) :] = 1
    grid_thw = np.array([grid] * batch)
    pixel_values = rng.standard_normal((batch * grid[1] * grid[2], cfg.vision.patch_dim))
    position_ids, _ = get_rope_index(ids, grid_thw, attention_mask=mask, config=cfg)
    return {
        "input_ids": ids,
        "attention_mask": mask,
        "completion_mask": completion,
        "position_ids": position_ids.astype(np.int32),
        "pixel_values": pixel_values.astype(np.float32),
        "image_grid_thw": grid_thw,
    }


@pytest.fixture(scope="module")
def no_replica_parallel_save():
    """orbax splits the write of a replicated array over its replicas, compiling one slice
    program per (array, replica) on first use: ~150 compiles here, a one-off cost in a real run
    but most of this test's time. Write each array from replica 0 instead (same files)."""
    import orbax.checkpoint as ocp

    registry = ocp.type_handlers
    original = registry.get_type_handler(jax.Array)
    registry.register_type_handler(
        jax.Array, registry.ArrayHandler(use_replica_parallel=False), override=True
    )
    yield
    registry.register_type_handler(jax.Array, original, override=True)
