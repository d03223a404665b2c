"""One GRPO update (jaxseg.train.steps.train_step: PPO-clip + k3 KL, AdamW) of the tiny
Qwen2.5-VL on meshes (8,1,1), (1,2,4), (2,2,2): loss, diagnostics and the updated parameters
equal the unsharded update."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import nnx

from jaxseg.parallel import mesh_from_shape
from jaxseg.parallel.rules import (
    batch_sharding,
    pixel_rows_sharding,
    position_ids_sharding,
    state_shardings,
)
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
    return make_policy_batch(examples, config=tiny_config(), length_buckets=(32,), patch_bucket=64)


def _place(batch, mesh):
    row = lambda x: jax.device_put(x, batch_sharding(x.shape, mesh))  # noqa: E731
    return batch.replace(
        input_ids=row(batch.input_ids),
        attention_mask=row(batch.attention_mask),
        loss_mask=row(batch.loss_mask),
        advantages=row(batch.advantages),
        old_logp=row(batch.old_logp),
        ref_logp=row(batch.ref_logp),
        position_ids=jax.device_put(
            batch.position_ids, position_ids_sharding(batch.position_ids.shape, mesh)
        ),
        pixel_values=jax.device_put(
            batch.pixel_values, pixel_rows_sharding(batch.pixel_values.shape, mesh)
        ),
    )


def _update(model, batch, mesh=None):
    """Updates a copy of `model` (the session fixture stays untouched)."""
    graphdef, state = nnx.split(nnx.clone(model))
    if mesh is not None:
        state = jax.device_put(state, state_shardings(model, mesh))
        batch = _place(batch, mesh)
    model = nnx.merge(graphdef, state)
    opt = nnx.Optimizer(model, make_optimizer(OPT), wrt=nnx.Param)
    if mesh is not None:
        nnx.update(opt, jax.device_put(nnx.state(opt), state_shardings(opt, mesh)))
        with jax.set_mesh(mesh):
            metrics = train_step(model, opt, [batch], LOSS)
    else:
        metrics = train_step(model, opt, [batch], LOSS)
    params = {p: np.asarray(v[...]) for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    return metrics, params


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
    ref_metrics, ref_params = unsharded_update
    metrics, params = _update(tiny_model, grpo_batch, mesh_from_shape(shape))
    for key in ("loss", "grad_norm", "kl_k3", "ratio_mean", "clip_frac_total", "entropy"):
        assert metrics[key] == pytest.approx(ref_metrics[key], abs=1e-5), key
    assert 0 < ref_metrics["clip_frac_total"] < 1  # perturbed old log-probs: some clipping
    before = {p: np.asarray(v[...]) for p, v in nnx.to_flat_state(nnx.state(tiny_model, nnx.Param))}
    moved = 0
    for path, value in ref_params.items():
        np.testing.assert_allclose(params[path], value, atol=1e-5, rtol=0, err_msg=str(path))
        moved += int(np.abs(value - before[path]).max() > 5e-5)
    assert moved > len(ref_params) // 2  # the update did change most tensors


def test_constrain_state_keeps_rule_shardings_through_a_jitted_update(tiny_model, grpo_batch):
    """train_step's own update leaves the layout to XLA; an update that ends with
    constrain_state returns every parameter and moment on its rule sharding."""
    from jaxseg.parallel.rules import constrain_state
    from jaxseg.train.steps import accumulate_grads

    mesh = mesh_from_shape((2, 2, 2))
    graphdef, state = nnx.split(nnx.clone(tiny_model))
    model = nnx.merge(graphdef, jax.device_put(state, state_shardings(tiny_model, mesh)))
    opt = nnx.Optimizer(model, make_optimizer(OPT), wrt=nnx.Param)
    nnx.update(opt, jax.device_put(nnx.state(opt), state_shardings(opt, mesh)))

    @nnx.jit
    def apply(opt, model, grads):
        opt.update(model, grads)
        constrain_state(model, mesh, nnx.Param)
        constrain_state(opt, mesh)

    with jax.set_mesh(mesh):
        _, grads, _ = accumulate_grads(model, [_place(grpo_batch, mesh)], LOSS)
        apply(opt, model, grads)
    for module, filters in ((model, (nnx.Param,)), (opt, ())):
        want = dict(nnx.to_flat_state(state_shardings(module, mesh, *filters)))
        for path, var in nnx.to_flat_state(nnx.state(module, *filters)):
            assert var[...].sharding.is_equivalent_to(want[path], var.ndim), path
