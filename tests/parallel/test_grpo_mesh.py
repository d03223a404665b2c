"""One GRPO update (jaxseg.train.steps.train_step: PPO-clip + k3 KL, AdamW) of the tiny
Qwen2.5-VL on meshes (8,1,1), (1,2,4), (2,2,2): loss, diagnostics and the updated parameters
equal the unsharded update."""

from __future__ import annotations

import numpy as np
import pytest
from flax import nnx

from jaxseg.parallel import mesh_from_shape
from jaxseg.parallel.placement import place
from jaxseg.parallel.rules import state_shardings
from jaxseg.rl.objective import GRPOLossConfig
from jaxseg.train.batch import make_policy_batch
from jaxseg.train.steps import OptimizerConfig, make_optimizer, train_step

from .conftest import tiny_config

LOSS = GRPOLossConfig(policy_loss="ppo_clip", eps_low=0.2, kl_estimator="k3", kl_coef=0.01)
# AdamW's first step moves each weight by lr * g / (|g| + eps): where a gradient is near zero,
# fp32 reduction-order noise between meshes (~1e-9) becomes a visible fraction of lr (measured:
# 1.2e-5 at lr 1e-3 on 2 of 37632 patch-embedding weights). At lr 1e-4 every weight still moves
# by ~1e-4 and the meshes agree to ~1e-6.
OPT = OptimizerConfig(learning_rate=1e-4, schedule="constant", weight_decay=0.01)


@pytest.fixture(scope="module")
def grpo_batch(image_batch):
    """8 rollouts (2 groups of 4): completions scored, old/ref log-probs perturbed so ratios
    and KL are not trivially 1 / 0."""
    rng = np.random.default_rng(11)
    examples = []
    patches = image_batch["pixel_values"].reshape(8, -1, image_batch["pixel_values"].shape[1])
    for b in range(8):
        keep = image_batch["attention_mask"][b].astype(bool)
        n = int(keep.sum())
        examples.append(
            {
                "input_ids": image_batch["input_ids"][b][keep],
                "policy_mask": image_batch["completion_mask"][b][keep],
                "pixel_values": patches[b],
                "image_grid_thw": image_batch["image_grid_thw"][b : b + 1],
                "advantage": float(rng.standard_normal()),
                "old_logp": -5.7 + 0.3 * rng.standard_normal(n),
                "ref_logp": -5.7 + 0.3 * rng.standard_normal(n),
            }
        )
    return make_policy_batch(
        examples, config=tiny_config(), length_buckets=(32,), patch_buckets=(64,)
    )


def _update(model, batch, mesh=None):
    """Updates a copy of `model` (the session fixture stays untouched) with train_step, on
    `mesh` when given (model and optimizer placed by jaxseg.parallel.placement, the batch by
    train_step itself)."""
    model = place(nnx.clone(model), mesh)
    opt = place(nnx.Optimizer(model, make_optimizer(OPT), wrt=nnx.Param), mesh)
    metrics = train_step(model, opt, [batch], LOSS, mesh)
    params = {p: np.asarray(v[...]) for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    return metrics, params, model, opt


@pytest.fixture(scope="module")
def unsharded_update(tiny_model, grpo_batch):
    return _update(tiny_model, grpo_batch)


# (2,2,2) uses all three axes and stays in the default tier; the other two cost ~25 s each on
# a loaded 2-core machine and run with -m slow.
GRPO_MESHES = [
    pytest.param((8, 1, 1), marks=pytest.mark.slow),
    pytest.param((1, 2, 4), marks=pytest.mark.slow),
    (2, 2, 2),
]


@pytest.mark.parametrize("shape", GRPO_MESHES, ids=lambda s: "x".join(map(str, s)))
def test_grpo_update_on_mesh_equals_unsharded(shape, tiny_model, grpo_batch, unsharded_update):
    ref_metrics, ref_params = unsharded_update[:2]
    metrics, params = _update(tiny_model, grpo_batch, mesh_from_shape(shape))[:2]
    for key in ("loss", "grad_norm", "kl_k3", "ratio_mean", "clip_frac_total", "entropy"):
        assert metrics[key] == pytest.approx(ref_metrics[key], abs=1e-5), key
    assert 0 < ref_metrics["clip_frac_total"] < 1  # perturbed old log-probs: some clipping
    before = {p: np.asarray(v[...]) for p, v in nnx.to_flat_state(nnx.state(tiny_model, nnx.Param))}
    moved = 0
    for path, value in ref_params.items():
        np.testing.assert_allclose(params[path], value, atol=1e-5, rtol=0, err_msg=str(path))
        moved += int(np.abs(value - before[path]).max() > 5e-5)
    assert moved > len(ref_params) // 2  # the update did change most tensors


def test_train_step_on_mesh_keeps_rule_shardings(tiny_model, grpo_batch):
    """XLA picks a jitted update's output layouts freely (the vision norms and their moments
    came back sharded over 'fsdp'); train_step on a mesh pins every parameter and moment to
    its rule sharding (rules.constrain_state), two steps in a row."""
    mesh = mesh_from_shape((2, 2, 2))
    _, _, model, opt = _update(tiny_model, grpo_batch, mesh)
    train_step(model, opt, [grpo_batch], LOSS, mesh)
    for module, filters in ((model, (nnx.Param,)), (opt, ())):
        want = dict(nnx.to_flat_state(state_shardings(module, mesh, *filters)))
        for path, var in nnx.to_flat_state(nnx.state(module, *filters)):
            assert var[...].sharding.is_equivalent_to(want[path], var.ndim), path
