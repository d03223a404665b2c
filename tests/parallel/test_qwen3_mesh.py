"""An SFT step and a GRPO step (jaxseg.train.steps.train_step) of a tiny random Qwen3-VL
(DeepStack, interleaved M-RoPE) on a (2, 2, 2) mesh of simulated devices equal the unsharded
update: loss, diagnostics and every updated parameter to 1e-5."""

from __future__ import annotations

import numpy as np
import pytest
from flax import nnx

from jaxseg.models.family import get_family
from jaxseg.parallel import mesh_from_shape
from jaxseg.parallel.placement import place
from jaxseg.rl.objective import GRPOLossConfig
from jaxseg.train.batch import make_policy_batch
from jaxseg.train.steps import OptimizerConfig, SFTLoss, make_optimizer, train_step

from .conftest import IMAGE_TOKEN, VIDEO_TOKEN, VISION_END, VISION_START, VOCAB

GRPO = GRPOLossConfig(policy_loss="ppo_clip", eps_low=0.2, kl_estimator="k3", kl_coef=0.01)
# lr 1e-4: see test_grpo_mesh.py (AdamW's first step amplifies fp32 reduction-order noise)
OPT = OptimizerConfig(learning_rate=1e-4, schedule="constant", weight_decay=0.01)
PATCH_DIM = 3 * 2 * 16 * 16


@pytest.fixture(scope="module")
def q3_model():
    family = get_family("qwen3_vl")
    config = family.preset(
        "nano",
        vocab_size=VOCAB,
        image_token_id=IMAGE_TOKEN,
        video_token_id=VIDEO_TOKEN,
        vision_start_token_id=VISION_START,
        vision_end_token_id=VISION_END,
        tie_word_embeddings=False,
    )
    return family.build(config, rngs=nnx.Rngs(3))


@pytest.fixture(scope="module")
def batch(q3_model):
    """8 rows: text, one 4x4-patch image, text, each with a scored completion; GRPO fields
    perturbed so ratios and KL are not trivially 1 / 0."""
    rng = np.random.default_rng(5)
    examples = []
    for b in range(8):
        prompt = list(rng.integers(10, 280, 3 + b % 3))
        completion = list(rng.integers(10, 280, 4 + b % 2))
        ids = prompt + [VISION_START] + [IMAGE_TOKEN] * 4 + [VISION_END] + completion
        n = len(ids)
        examples.append(
            {
                "input_ids": np.asarray(ids),
                "policy_mask": np.asarray([0.0] * (n - len(completion)) + [1.0] * len(completion)),
                "pixel_values": rng.standard_normal((16, PATCH_DIM)).astype(np.float32),
                "image_grid_thw": np.asarray([[1, 4, 4]]),
                "advantage": float(rng.standard_normal()),
                "old_logp": -5.7 + 0.3 * rng.standard_normal(n),
                "ref_logp": -5.7 + 0.3 * rng.standard_normal(n),
            }
        )
    return make_policy_batch(
        examples, config=q3_model.config, length_buckets=(32,), patch_buckets=(64,)
    )


def _update(model, batch, loss, mesh=None):
    model = place(nnx.clone(model), mesh)
    opt = place(nnx.Optimizer(model, make_optimizer(OPT), wrt=nnx.Param), mesh)
    metrics = train_step(model, opt, [batch], loss, mesh)
    params = {p: np.asarray(v[...]) for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    return metrics, params


@pytest.mark.parametrize("loss", [SFTLoss(), GRPO], ids=["sft", "grpo"])
def test_qwen3_update_on_mesh_equals_unsharded(q3_model, batch, loss):
    ref_metrics, ref_params = _update(q3_model, batch, loss)
    metrics, params = _update(q3_model, batch, loss, mesh_from_shape((2, 2, 2)))
    assert np.isfinite(ref_metrics["loss"]) and ref_metrics["grad_norm"] > 0
    for key in ("loss", "grad_norm"):
        assert metrics[key] == pytest.approx(ref_metrics[key], abs=1e-5), key
    before = {p: np.asarray(v[...]) for p, v in nnx.to_flat_state(nnx.state(q3_model, nnx.Param))}
    moved = 0
    for path, value in ref_params.items():
        np.testing.assert_allclose(params[path], value, atol=1e-5, rtol=0, err_msg=str(path))
        moved += int(np.abs(value - before[path]).max() > 5e-5)
    assert moved > len(ref_params) // 2  # the update changed most tensors, DeepStack's too
    deep = [p for p in ref_params if "deepstack_merger_list" in str(p)]
    assert deep and all(np.abs(ref_params[p] - before[p]).max() > 0 for p in deep)
