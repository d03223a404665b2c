"""The logical-axis rules: one table that places everything living on the mesh.

Every array dimension gets a logical name: parameters carry theirs in their `out_sharding`
metadata (jaxseg/models/layers.py), the AdamW moments copy their parameter's, and the callers
that place KV caches and input batches name theirs here. `RULES` maps a logical name to mesh
axes, as MaxText's `logical_axis_rules` does (flax.linen's `logical_to_mesh_axes`). Two
adjustments make one table serve every mesh shape, including one device and none:

* mesh axes absent from the mesh are dropped (a 1-axis FSDP mesh uses only the 'fsdp' rules),
  and a mesh axis is used at most once per array;
* a dimension its mesh axes do not divide is replicated (`divisible_spec`: 2 KV heads on
  tensor=4, odd vision sizes, a single prompt before it is tiled into its group).

Default placement: FSDP over the hidden ("embed") dimension, tensor parallel over heads / MLP /
vocabulary, the vision tower's matrices FSDP-sharded over their input dimension, batch rows
over data x fsdp.

    mesh = create_mesh(config.mesh)
    params = jax.device_put(nnx.state(model, nnx.Param), state_shardings(model, mesh, nnx.Param))
    opt = jax.device_put(nnx.state(optimizer), state_shardings(optimizer, mesh))
    cache = jax.device_put(cache, kv_cache_shardings(cache, mesh))

The model code is written for meshes in Auto axis mode (GSPMD propagates activation shardings
from the parameters); `jaxseg.parallel.mesh.create_mesh` builds one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from jaxseg.models.kv_cache import KVCache

Rules = Sequence[tuple[str, str | tuple[str, ...] | None]]

BATCH_AXES = ("data", "fsdp")

RULES: Rules = (
    # decoder parameters
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("q_heads", "tensor"),
    ("kv_heads", "tensor"),
    ("mlp", "tensor"),
    ("norm", None),
    ("head_dim", None),  # Qwen3 per-head q/k norms
    # vision tower parameters
    ("vision_patch", None),
    ("vision_embed", "fsdp"),
    ("vision_heads", "tensor"),
    ("vision_mlp", "tensor"),
    ("vision_merge", "fsdp"),
    ("vision_pos", None),  # Qwen3-VL learned position table
    # activations and input batches: rows `[B, ...]`, M-RoPE positions `[3, B, L]`, the vision
    # tower's input rows `pixel_values [N_patches, C*T*P*P]` (one sample's patches after another)
    ("batch", BATCH_AXES),
    ("length", None),
    ("vision_tokens", BATCH_AXES),
    # KV cache `[B, S, KV, Dh]`: rows like the batch, KV heads like k_proj/v_proj's output
    ("cache_batch", BATCH_AXES),
    ("cache_length", None),
    ("cache_kv_heads", "tensor"),
    ("cache_head_dim", None),
)
KV_CACHE_AXES = ("cache_batch", "cache_length", "cache_kv_heads", "cache_head_dim")

AnyMesh = jax.sharding.Mesh | jax.sharding.AbstractMesh


def logical_to_mesh_spec(
    logical_axes: Sequence[str | None], mesh: AnyMesh, rules: Rules = RULES
) -> PartitionSpec:
    """PartitionSpec for `logical_axes` on `mesh` (shape-blind: see `named_sharding`).

    Mesh axes absent from `mesh` are dropped; a mesh axis is used at most once (the first
    logical axis that asks for it gets it). An unknown logical name is an error."""
    table = dict(rules)
    used: set[str] = set()
    spec = []
    for axis in logical_axes:
        if axis is not None and axis not in table:
            raise KeyError(f"logical axis {axis!r} has no rule; known: {sorted(table)}")
        target = table.get(axis) if axis is not None else None
        names = (target,) if isinstance(target, str) else tuple(target or ())
        names = tuple(n for n in names if n in mesh.shape and n not in used)
        used.update(names)
        spec.append(None if not names else names[0] if len(names) == 1 else names)
    return PartitionSpec(*spec)


def divisible_spec(shape: Sequence[int], spec: PartitionSpec, mesh: AnyMesh) -> PartitionSpec:
    """`spec` padded to `len(shape)` entries, with every entry whose mesh axes do not divide
    its dimension replaced by None (replicated). The one place that decides divisibility."""
    if len(spec) > len(shape):
        raise ValueError(f"{len(spec)} spec entries {tuple(spec)} for shape {tuple(shape)}")
    entries = tuple(spec) + (None,) * (len(shape) - len(spec))
    fixed = []
    for dim, entry in zip(shape, entries, strict=True):
        names = (entry,) if isinstance(entry, str) else tuple(entry or ())
        shards = math.prod(mesh.shape[n] for n in names)
        fixed.append(entry if dim % shards == 0 else None)
    return PartitionSpec(*fixed)


def named_sharding(
    shape: Sequence[int],
    logical_axes: Sequence[str | None],
    mesh: AnyMesh,
    rules: Rules = RULES,
) -> NamedSharding:
    """NamedSharding of an array of `shape` whose leading dimensions are named `logical_axes`
    (the rest replicated); a dimension its mesh axes do not divide is replicated."""
    if len(logical_axes) > len(shape):
        raise ValueError(
            f"{len(logical_axes)} logical axes {tuple(logical_axes)} for shape {tuple(shape)}"
        )
    spec = logical_to_mesh_spec(logical_axes, mesh, rules)
    return NamedSharding(mesh, divisible_spec(shape, spec, mesh))


def shards(size: int, logical_axis: str, mesh: AnyMesh, rules: Rules = RULES) -> int:
    """How many pieces a dimension of `size` named `logical_axis` is cut into on `mesh` (1 when
    its mesh axes do not divide it): e.g. attention heads per device = heads / shards."""
    sharding = named_sharding((size,), (logical_axis,), mesh, rules)
    return size // sharding.shard_shape((size,))[0]


def variable_sharding(var: nnx.Variable, mesh: AnyMesh, rules: Rules = RULES) -> NamedSharding:
    """From the variable's `out_sharding` logical axes; replicated when it has none (step
    counters, optax's `count`)."""
    axes = var.get_metadata().get("out_sharding") or ()
    return named_sharding(var.shape, axes, mesh, rules)


def state_shardings(module_or_state, mesh: AnyMesh, *filters, rules: Rules = RULES) -> nnx.State:
    """NamedSharding per variable of a module/state (default: all variables).

    Works for the model (`nnx.Param`), for `nnx.Optimizer` (its AdamW moments are
    `OptVariable`s that copy the parameter's logical axes, so moments shard like their
    parameter; `count`/`step` are replicated) and for abstract (`nnx.eval_shape`) models."""
    state = nnx.state(module_or_state, *filters) if filters else nnx.state(module_or_state)
    return jax.tree.map(
        lambda v: variable_sharding(v, mesh, rules),
        state,
        is_leaf=lambda x: isinstance(x, nnx.Variable),
    )


def kv_cache_shardings(cache: KVCache, mesh: AnyMesh, rules: Rules = RULES) -> KVCache:
    """KVCache of NamedShardings: keys/values `[B, S, KV, Dh]`, key_mask `[B, S]`, index
    replicated."""
    out = KVCache(
        keys=tuple(named_sharding(k.shape, KV_CACHE_AXES, mesh, rules) for k in cache.keys),
        values=tuple(named_sharding(v.shape, KV_CACHE_AXES, mesh, rules) for v in cache.values),
        key_mask=named_sharding(cache.key_mask.shape, KV_CACHE_AXES[:2], mesh, rules),
        index=NamedSharding(mesh, PartitionSpec()),
    )
    if not cache.has_prefix:
        return out
    # a group's shared prompt `[P, KV, S_p, Dh]` (P may not divide the batch axes: replicated)
    prefix_axes = tuple(KV_CACHE_AXES[i] for i in (0, 2, 1, 3))
    return out.replace(
        prefix_keys=tuple(
            named_sharding(k.shape, prefix_axes, mesh, rules) for k in cache.prefix_keys
        ),
        prefix_values=tuple(
            named_sharding(v.shape, prefix_axes, mesh, rules) for v in cache.prefix_values
        ),
        prefix_mask=named_sharding(cache.prefix_mask.shape, KV_CACHE_AXES[:2], mesh, rules),
    )


def batch_sharding(shape: Sequence[int], mesh: AnyMesh, rules: Rules = RULES) -> NamedSharding:
    """Input arrays `[B, ...]`: leading dim over data x fsdp, the rest replicated."""
    return named_sharding(shape, ("batch",), mesh, rules)


def position_ids_sharding(
    shape: Sequence[int], mesh: AnyMesh, rules: Rules = RULES
) -> NamedSharding:
    """M-RoPE positions `[3, B, L]`: batch is the second dimension."""
    return named_sharding(shape, (None, "batch"), mesh, rules)


def pixel_rows_sharding(shape: Sequence[int], mesh: AnyMesh, rules: Rules = RULES) -> NamedSharding:
    """`pixel_values [N_patches, C*T*P*P]`: rows over data x fsdp (replicated if not divisible)."""
    return named_sharding(shape, ("vision_tokens",), mesh, rules)


def abstract_on_mesh(module_or_state, mesh: AnyMesh, *filters, rules: Rules = RULES) -> dict:
    """Pure-dict tree of `jax.ShapeDtypeStruct(shape, dtype, sharding=<target>)`, the
    `abstract_state` that `Checkpointer.restore` reads straight into the new mesh (a run
    saved on one mesh shape restores on another: orbax reshards on read)."""
    state = nnx.state(module_or_state, *filters) if filters else nnx.state(module_or_state)
    shardings = state_shardings(state, mesh, rules=rules)
    return jax.tree.map(
        lambda v, s: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=s),
        nnx.to_pure_dict(state),
        nnx.to_pure_dict(shardings),
    )


def constrain_state(module, mesh: AnyMesh, *filters, rules: Rules = RULES) -> None:
    """Inside jit: pins `module`'s variables (default: all) to their rule shardings.

    XLA picks the output layout of a jitted update freely; after one GRPO `train_step` on a
    (2,2,2) mesh the vision norms and their AdamW moments came back sharded over 'fsdp'
    instead of replicated. The next step then recompiles and the layout drifts from the
    rules (and from what `abstract_on_mesh` restores). Call at the end of the jitted update:
    `optimizer.update(model, grads); constrain_state(model, mesh, nnx.Param);
    constrain_state(optimizer, mesh)`."""
    state = nnx.state(module, *filters) if filters else nnx.state(module)
    shardings = state_shardings(state, mesh, rules=rules)
    nnx.update(module, jax.lax.with_sharding_constraint(state, shardings))
