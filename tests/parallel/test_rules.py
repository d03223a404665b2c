"""Sharded == unsharded: forward logits, a completion loss and its gradients of the tiny
Qwen2.5-VL on meshes (8,1,1), (1,2,4), (2,2,2) of the 8 simulated CPU devices, and the rules
that place parameters, optimizer state, KV cache and batch."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from jaxseg.models.qwen2_5_vl import KVCache, vision_layout
from jaxseg.parallel import mesh_from_shape
from jaxseg.parallel.rules import (
    batch_sharding,
    divisible_spec,
    kv_cache_shardings,
    logical_to_mesh_spec,
    named_sharding,
    pixel_rows_sharding,
    position_ids_sharding,
    shards,
    state_shardings,
)
from jaxseg.rl.logprobs import next_token_logprobs

from .conftest import tiny_config

MESHES = [(8, 1, 1), (1, 2, 4), (2, 2, 2)]


def completion_loss(model, batch, layout):
    """Mean NLL of the completion tokens (token t predicted at t-1); also returns the logits."""
    logits = model(
        batch["input_ids"],
        attention_mask=batch["attention_mask"],
        pixel_values=batch["pixel_values"],
        position_ids=batch["position_ids"],
        image_layout=layout,
    )
    logp = next_token_logprobs(logits, batch["input_ids"])
    weights = batch["completion_mask"][:, 1:]
    return -(logp * weights).sum() / weights.sum(), logits


@nnx.jit
def loss_logits_grads(model, batch, layout):
    (loss, logits), grads = nnx.value_and_grad(completion_loss, has_aux=True)(model, batch, layout)
    return loss, logits, grads


def place_batch(batch, mesh):
    put = {
        "input_ids": batch_sharding,
        "attention_mask": batch_sharding,
        "completion_mask": batch_sharding,
        "position_ids": position_ids_sharding,
        "pixel_values": pixel_rows_sharding,
    }
    return {k: jax.device_put(batch[k], fn(batch[k].shape, mesh)) for k, fn in put.items()}


def sharded_copy(model, mesh):
    graphdef, state = nnx.split(model)
    return nnx.merge(graphdef, jax.device_put(state, state_shardings(model, mesh)))


@pytest.fixture(scope="module")
def unsharded(tiny_model, image_batch):
    layout = vision_layout(image_batch["image_grid_thw"], tiny_config().vision)
    batch = {k: jnp.asarray(v) for k, v in image_batch.items() if k != "image_grid_thw"}
    loss, logits, grads = loss_logits_grads(tiny_model, batch, layout)
    return layout, (np.asarray(loss), np.asarray(logits), jax.tree.map(np.asarray, grads))


@pytest.mark.parametrize("shape", MESHES, ids=lambda s: "x".join(map(str, s)))
def test_forward_loss_grads_on_mesh_equal_unsharded(shape, tiny_model, image_batch, unsharded):
    layout, (loss_ref, logits_ref, grads_ref) = unsharded
    mesh = mesh_from_shape(shape)
    model = sharded_copy(tiny_model, mesh)
    q = model.language_model.layers[0].self_attn.q_proj.kernel[...]
    assert q.sharding.spec == P("fsdp", "tensor")
    assert len(q.sharding.device_set) == 8
    batch = place_batch(image_batch, mesh)
    with jax.set_mesh(mesh):
        loss, logits, grads = loss_logits_grads(model, batch, layout)

    assert logits.sharding.mesh.shape == mesh.shape
    np.testing.assert_allclose(np.asarray(logits), logits_ref, atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.asarray(loss), loss_ref, atol=1e-5, rtol=0)
    flat_ref = dict(nnx.to_flat_state(grads_ref))
    flat = dict(nnx.to_flat_state(grads))
    assert flat.keys() == flat_ref.keys()
    for path, ref in flat_ref.items():
        np.testing.assert_allclose(
            np.asarray(flat[path][...]), ref[...], atol=1e-5, rtol=0, err_msg=str(path)
        )
    # The loss has a gradient everywhere (vision tower included), so the check is not vacuous.
    assert np.abs(flat_ref[("visual", "patch_embed", "kernel")][...]).max() > 1e-4


def test_rules_map_logical_axes_and_drop_absent_mesh_axes():
    mesh = mesh_from_shape((2, 2, 2))
    assert logical_to_mesh_spec(("embed", "mlp"), mesh) == P("fsdp", "tensor")
    assert logical_to_mesh_spec(("vocab", "embed"), mesh) == P("tensor", "fsdp")
    assert logical_to_mesh_spec(("norm",), mesh) == P(None)
    assert logical_to_mesh_spec(("batch", "length"), mesh) == P(("data", "fsdp"), None)
    fsdp_only = mesh_from_shape((2,), ("fsdp",))
    assert logical_to_mesh_spec(("embed", "q_heads"), fsdp_only) == P("fsdp", None)
    assert logical_to_mesh_spec(("batch",), fsdp_only) == P("fsdp")
    # a mesh axis is used once per spec
    assert logical_to_mesh_spec(("embed", "embed"), mesh) == P("fsdp", None)
    with pytest.raises(KeyError, match="no rule"):
        logical_to_mesh_spec(("hidden",), mesh)


def test_divisibility_replicates_what_the_mesh_axes_do_not_divide():
    mesh = mesh_from_shape((2, 2, 2))
    spec = P(("data", "fsdp"), "tensor")
    assert divisible_spec((8, 6, 5), spec, mesh) == P(("data", "fsdp"), "tensor", None)
    assert divisible_spec((6, 3), spec, mesh) == P(None, None)  # 6 % 4, 3 % 2
    with pytest.raises(ValueError, match="spec entries"):
        divisible_spec((4,), spec, mesh)
    # the planner's per-device counts come from the same rule
    assert (shards(16, "q_heads", mesh), shards(3, "kv_heads", mesh)) == (2, 1)
    assert shards(12, "batch", mesh) == 4 and shards(6, "batch", mesh) == 1


def test_optimizer_state_shards_like_its_parameter(tiny_model):
    mesh = mesh_from_shape((1, 2, 4))
    opt = nnx.Optimizer(tiny_model, optax.adamw(1e-3), wrt=nnx.Param)
    shardings = dict(nnx.to_flat_state(state_shardings(opt, mesh)))
    params = dict(nnx.to_flat_state(state_shardings(tiny_model, mesh, nnx.Param)))
    down = ("language_model", "layers", 1, "mlp", "down_proj", "kernel")
    for moment in ("mu", "nu"):
        key = ("opt_state", 0, moment, *down)
        assert shardings[key].spec == params[down].spec == P("tensor", "fsdp")
    assert shardings[("opt_state", 0, "count")].spec == P()
    placed = jax.device_put(nnx.state(opt), state_shardings(opt, mesh))
    mu = dict(nnx.to_flat_state(placed))[("opt_state", 0, "mu", *down)][...]
    assert mu.sharding.shard_shape(mu.shape) == (96 // 4, 64 // 2)


def test_kv_cache_rules_shard_batch_and_heads_and_replicate_indivisible():
    cfg = tiny_config().text  # 2 KV heads
    cache = KVCache.create(cfg, batch_size=8, max_length=16)
    mesh = mesh_from_shape((2, 2, 2))
    sh = kv_cache_shardings(cache, mesh)
    assert sh.keys[0].spec == P(("data", "fsdp"), None, "tensor", None)
    assert sh.key_mask.spec == P(("data", "fsdp"), None)
    assert sh.index.spec == P()
    placed = jax.device_put(cache, sh)
    assert placed.values[1].sharding.shard_shape(placed.values[1].shape) == (2, 16, 1, 16)
    # tensor=4 does not divide 2 KV heads: that dimension is replicated, not an error.
    sh4 = kv_cache_shardings(cache, mesh_from_shape((1, 2, 4)))
    assert sh4.keys[0].spec == P(("data", "fsdp"), None, None, None)


def test_named_sharding_drops_absent_axes_and_rejects_too_many_names():
    mesh = mesh_from_shape((4,), ("fsdp",))
    assert named_sharding((8, 6), ("embed", "mlp"), mesh).spec == P("fsdp", None)
    assert named_sharding((6, 8), ("embed", "mlp"), mesh).spec == P(None, None)
    with pytest.raises(ValueError, match="logical axes"):
        named_sharding((8,), ("embed", "mlp"), mesh)
