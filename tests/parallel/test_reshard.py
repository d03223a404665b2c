"""A checkpoint saved on mesh (8,1,1) restores on (1,2,4): values equal, arrays land in the
target shardings (jaxseg.train.checkpoint.Checkpointer + abstract_on_mesh)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import PartitionSpec as P

from jaxseg.parallel import mesh_from_shape
from jaxseg.parallel.rules import abstract_on_mesh, state_shardings
from jaxseg.train.checkpoint import Checkpointer


@nnx.jit
def _adamw_after_one_update(model):
    """AdamW state after one update with unit gradients (so both moments are non-zero)."""
    opt = nnx.Optimizer(model, optax.adamw(1e-2), wrt=nnx.Param)
    opt.update(model, jax.tree.map(jnp.ones_like, nnx.state(model, nnx.Param)))
    return opt


def _train_state(model, mesh):
    """A copy of `model` and its AdamW state, placed on `mesh` (one compile for the update)."""
    graphdef, state = nnx.split(model)
    model = nnx.merge(graphdef, jax.device_put(state, state_shardings(model, mesh)))
    opt = _adamw_after_one_update(model)
    # jit chose the output layouts freely; put everything back on its rule's sharding (a
    # trainer pins them with out_shardings).
    nnx.update(model, jax.device_put(nnx.state(model), state_shardings(model, mesh)))
    nnx.update(opt, jax.device_put(nnx.state(opt), state_shardings(opt, mesh)))
    return model, opt


def test_checkpoint_saved_on_8x1x1_restores_on_1x2x4(
    tmp_path, tiny_model, no_replica_parallel_save
):
    src_mesh, dst_mesh = mesh_from_shape((8, 1, 1)), mesh_from_shape((1, 2, 4))
    model, opt = _train_state(tiny_model, src_mesh)
    saved = {
        "params": nnx.to_pure_dict(nnx.state(model, nnx.Param)),
        "opt": nnx.to_pure_dict(nnx.state(opt)),
    }
    kernel = saved["params"]["language_model"]["layers"][0]["mlp"]["gate_proj"]["kernel"]
    assert kernel.sharding.spec == P("fsdp", "tensor") and kernel.sharding.mesh.shape["data"] == 8

    with Checkpointer(tmp_path / "ckpt", async_save=False) as ckpt:
        ckpt.save(3, saved, {"note": "saved on 8x1x1"})
    abstract = {
        "params": abstract_on_mesh(model, dst_mesh, nnx.Param),
        "opt": abstract_on_mesh(opt, dst_mesh),
    }
    with Checkpointer(tmp_path / "ckpt") as ckpt:
        restored, meta = ckpt.restore(abstract)
    assert meta == {"note": "saved on 8x1x1"}

    flat_saved = jax.tree_util.tree_leaves_with_path(saved)
    flat_restored = dict(jax.tree_util.tree_leaves_with_path(restored))
    flat_abstract = dict(jax.tree_util.tree_leaves_with_path(abstract))
    assert len(flat_saved) == len(flat_restored)
    for path, value in flat_saved:
        got = flat_restored[path]
        assert got.sharding == flat_abstract[path].sharding, path
        np.testing.assert_array_equal(np.asarray(got), np.asarray(value), err_msg=str(path))
    gate = restored["params"]["language_model"]["layers"][0]["mlp"]["gate_proj"]["kernel"]
    assert dict(gate.sharding.mesh.shape) == {"data": 1, "fsdp": 2, "tensor": 4}
    assert gate.sharding.shard_shape(gate.shape) == (64 // 2, 96 // 4)
    nu = restored["opt"]["opt_state"][0]["nu"]["language_model"]["embed_tokens"]["embedding"]
    assert nu.sharding.spec == P("tensor", "fsdp") and float(jnp.abs(nu).max()) > 0
