"""Logical parameter axes -> mesh axes.

Every parameter carries logical axes in its `out_sharding` metadata (layers.py). A rules table
maps each logical axis to a mesh axis (or None = replicated); mesh axes absent from the mesh
are dropped, so the same rules serve a ('data', 'fsdp', 'tensor') mesh, a 1-axis FSDP mesh or
none at all (the model then runs unsharded).

Default: FSDP over the hidden ("embed") dimension, tensor parallel over heads / MLP / vocab,
the vision tower's small matrices FSDP-sharded only over their input dimension.

The model code is written for meshes in Auto axis mode (GSPMD propagates activation shardings
from the parameters); `make_mesh` builds one. jax's default `jax.make_mesh` is Explicit mode,
which would need `out_sharding=` on every gather/matmul.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

Rules = Sequence[tuple[str, str | tuple[str, ...] | None]]

DEFAULT_RULES: Rules = (
    # text
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("q_heads", "tensor"),
    ("kv_heads", "tensor"),
    ("mlp", "tensor"),
    ("norm", None),
    ("head_dim", None),  # Qwen3 per-head q/k norms
    # vision
    ("vision_patch", None),
    ("vision_embed", "fsdp"),
    ("vision_heads", "tensor"),
    ("vision_mlp", "tensor"),
    ("vision_merge", "fsdp"),
    ("vision_pos", None),  # Qwen3-VL learned position table
    # activations (for callers that constrain them)
    ("batch", ("data", "fsdp")),
    ("length", None),
)


def make_mesh(shape: Sequence[int], axis_names: Sequence[str] = ("data", "fsdp", "tensor")) -> Mesh:
    """A device mesh in Auto axis mode, e.g. `make_mesh((1, 4, 2))` for data x fsdp x tensor."""
    auto = (jax.sharding.AxisType.Auto,) * len(axis_names)
    return jax.make_mesh(tuple(shape), tuple(axis_names), axis_types=auto)


def logical_to_mesh_spec(
    logical_axes: Sequence[str | None], mesh: Mesh, rules: Rules = DEFAULT_RULES
) -> PartitionSpec:
    """PartitionSpec for `logical_axes` on `mesh`; a mesh axis is used at most once."""
    table = dict(rules)
    used: set[str] = set()
    spec = []
    for axis in logical_axes:
        target = table.get(axis) if axis is not None else None
        names = (target,) if isinstance(target, str) else tuple(target or ())
        names = tuple(n for n in names if n in mesh.shape and n not in used)
        used.update(names)
        spec.append(None if not names else names[0] if len(names) == 1 else names)
    return PartitionSpec(*spec)


def param_sharding(var: nnx.Variable, mesh: Mesh, rules: Rules = DEFAULT_RULES) -> NamedSharding:
    """NamedSharding of one parameter from its logical-axes metadata."""
    axes = var.get_metadata().get("out_sharding") or ()
    shape = var.shape
    spec = logical_to_mesh_spec(axes, mesh, rules)
    # Replicate a dimension the mesh axis does not divide (e.g. odd vision sizes).
    fixed = []
    for dim, entry in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
        names = (entry,) if isinstance(entry, str) else tuple(entry or ())
        size = 1
        for n in names:
            size *= mesh.shape[n]
        fixed.append(entry if dim % size == 0 else None)
    return NamedSharding(mesh, PartitionSpec(*fixed))


def model_shardings(model: nnx.Module, mesh: Mesh, rules: Rules = DEFAULT_RULES) -> nnx.State:
    """State of NamedShardings, one per parameter (works on abstract models too)."""
    state = nnx.state(model, nnx.Param)
    return jax.tree.map(
        lambda v: param_sharding(v, mesh, rules),
        state,
        is_leaf=lambda x: isinstance(x, nnx.Variable),
    )


def shard_model(model: nnx.Module, mesh: Mesh, rules: Rules = DEFAULT_RULES) -> nnx.Module:
    """Places every parameter of `model` on `mesh` (in place) and returns the model."""
    state = nnx.state(model, nnx.Param)
    shardings = model_shardings(model, mesh, rules)
    nnx.update(model, jax.device_put(state, shardings))
    return model
