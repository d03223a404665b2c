"""The model's parameters carry logical axes the rule table knows, and loading onto a mesh
places them on their rule shardings (a 1-device mesh here; the multi-device sharded-equals-
unsharded tests are tests/parallel/test_rules.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import PartitionSpec as P

from jaxseg.models.qwen2_5_vl import from_pretrained
from jaxseg.parallel import mesh_from_shape
from jaxseg.parallel.rules import RULES, state_shardings


def test_every_parameter_has_logical_axes(jax_model):
    for path, var in nnx.to_flat_state(nnx.state(jax_model, nnx.Param)):
        axes = var.get_metadata().get("out_sharding")
        assert axes is not None and len(axes) == var.ndim, path
        assert all(a in dict(RULES) for a in axes), (path, axes)


def test_load_onto_mesh_places_params_and_matches_unsharded(hf_dir, jax_model):
    mesh = mesh_from_shape((1, 1, 1))
    model = from_pretrained(hf_dir[1], mesh=mesh)
    shardings = state_shardings(model, mesh, nnx.Param)
    q = model.language_model.layers[0].self_attn.q_proj.kernel
    assert (
        q[...].sharding == shardings["language_model"]["layers"][0]["self_attn"]["q_proj"]["kernel"]
    )
    assert q[...].sharding.spec == P("fsdp", "tensor")
    ids = jnp.asarray(np.arange(1, 9)[None])
    with jax.set_mesh(mesh):
        out = jax.jit(lambda m, x: m(x))(model, ids)
    np.testing.assert_allclose(np.asarray(out), np.asarray(jax_model(ids)), atol=1e-6, rtol=0)
