"""Logical-axis rules and placement on a mesh (a 1-device mesh here; the multi-device
sharded-equals-unsharded test belongs to the parallel issue)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import PartitionSpec as P

from jaxseg.models.qwen2_5_vl import (
    DEFAULT_RULES,
    from_pretrained,
    logical_to_mesh_spec,
    make_mesh,
    model_shardings,
)


def _mesh(shape=(1, 1, 1)):
    return make_mesh(shape, ("data", "fsdp", "tensor"))


def test_rules_map_logical_axes_and_drop_absent_mesh_axes():
    mesh = _mesh()
    assert logical_to_mesh_spec(("embed", "mlp"), mesh) == P("fsdp", "tensor")
    assert logical_to_mesh_spec(("vocab", "embed"), mesh) == P("tensor", "fsdp")
    assert logical_to_mesh_spec(("norm",), mesh) == P(None)
    assert logical_to_mesh_spec(("batch", "length"), mesh) == P(("data", "fsdp"), None)
    fsdp_only = make_mesh((1,), ("fsdp",))
    assert logical_to_mesh_spec(("embed", "q_heads"), fsdp_only) == P("fsdp", None)
    # a mesh axis is used once per spec
    assert logical_to_mesh_spec(("embed", "embed"), mesh) == P("fsdp", None)


def test_every_parameter_has_logical_axes(jax_model):
    for path, var in nnx.to_flat_state(nnx.state(jax_model, nnx.Param)):
        axes = var.get_metadata().get("out_sharding")
        assert axes is not None and len(axes) == var.ndim, path
        assert all(a in dict(DEFAULT_RULES) for a in axes), (path, axes)


def test_load_onto_mesh_places_params_and_matches_unsharded(hf_dir, jax_model):
    mesh = _mesh()
    model = from_pretrained(hf_dir[1], mesh=mesh)
    shardings = model_shardings(model, mesh)
    q = model.language_model.layers[0].self_attn.q_proj.kernel
    assert (
        q[...].sharding == shardings["language_model"]["layers"][0]["self_attn"]["q_proj"]["kernel"]
    )
    assert q[...].sharding.spec == P("fsdp", "tensor")
    ids = jnp.asarray(np.arange(1, 9)[None])
    with jax.set_mesh(mesh):
        out = jax.jit(lambda m, x: m(x))(model, ids)
    np.testing.assert_allclose(np.asarray(out), np.asarray(jax_model(ids)), atol=1e-6, rtol=0)
