"""Logical-axis rules for everything that lives on the mesh: parameters (vision tower and
decoder: helper tables of jaxseg/models/qwen2_5_vl/sharding.py, reused as they are), optimizer
state (it mirrors the parameters), the sampler's KV cache and the input batch.

Each array dimension gets a logical name; `RULES` maps a name to mesh axes (maxtext's
`logical_axis_rules`, jax_anchors.md §1.4). Mesh axes absent from the mesh are dropped and a
dimension a mesh axis does not divide is replicated, so the same rules serve any mesh shape,
including one device.

    mesh = create_mesh(config.mesh)
    params = jax.device_put(nnx.state(model, nnx.Param), state_shardings(model, mesh))
    opt = jax.device_put(nnx.state(optimizer), state_shardings(optimizer, mesh))
    cache = jax.device_put(cache, kv_cache_shardings(cache, mesh))
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from jaxseg.models.kv_cache import KVCache
from jaxseg.models.qwen2_5_vl.sharding import DEFAULT_RULES, Rules, logical_to_mesh_spec

BATCH_AXES = ("data", "fsdp")

# Parameter rules are the model's own (vision: vision_*; decoder: embed/q_heads/kv_heads/mlp/
# vocab/norm). Added here: the KV cache `[B, S, KV, Dh]` (batch over data x fsdp like the
# activations, KV heads over tensor like k_proj/v_proj's output) and the vision tower's input
# rows (`pixel_values [N_patches, C*T*P*P]`, one sample's patches after another).
CACHE_RULES: Rules = (
    ("cache_batch", BATCH_AXES),
    ("cache_length", None),
    ("cache_kv_heads", "tensor"),
    ("cache_head_dim", None),
)
INPUT_RULES: Rules = (("vision_tokens", BATCH_AXES),)
RULES: Rules = tuple(DEFAULT_RULES) + CACHE_RULES + INPUT_RULES


def named_sharding(
    shape: Sequence[int],
    logical_axes: Sequence[str | None],
    mesh: jax.sharding.Mesh | jax.sharding.AbstractMesh,
    rules: Rules = RULES,
) -> NamedSharding:
    """NamedSharding of an array of `shape` whose dimensions are named `logical_axes`.

    A dimension that its mesh axes do not divide is replicated (e.g. 2 KV heads on tensor=4),
    the rule the model's `param_sharding` applies to parameters."""
    if len(logical_axes) > len(shape):
        raise ValueError(
            f"{len(logical_axes)} logical axes {tuple(logical_axes)} for shape {shape}"
        )
    spec = tuple(logical_to_mesh_spec(logical_axes, mesh, rules))
    spec = spec + (None,) * (len(shape) - len(spec))
    fixed = []
    for dim, entry in zip(shape, spec, strict=True):
        names = (entry,) if isinstance(entry, str) else tuple(entry or ())
        size = 1
        for name in names:
            size *= mesh.shape[name]
        fixed.append(entry if dim % size == 0 else None)
    return NamedSharding(mesh, PartitionSpec(*fixed))


def variable_sharding(var: nnx.Variable, mesh, rules: Rules = RULES) -> NamedSharding:
    """From the variable's `out_sharding` logical axes; replicated when it has none (step
    counters, optax's `count`)."""
    axes = var.get_metadata().get("out_sharding") or ()
    return named_sharding(var.shape, axes, mesh, rules)


def state_shardings(module_or_state, mesh, *filters, rules: Rules = RULES) -> nnx.State:
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


def kv_cache_shardings(cache: KVCache, mesh, rules: Rules = RULES) -> KVCache:
    """KVCache of NamedShardings: keys/values `[B, S, KV, Dh]`, key_mask `[B, S]`, index
    replicated."""
    kv_axes = ("cache_batch", "cache_length", "cache_kv_heads", "cache_head_dim")
    return KVCache(
        keys=tuple(named_sharding(k.shape, kv_axes, mesh, rules) for k in cache.keys),
        values=tuple(named_sharding(v.shape, kv_axes, mesh, rules) for v in cache.values),
        key_mask=named_sharding(cache.key_mask.shape, kv_axes[:2], mesh, rules),
        index=NamedSharding(mesh, PartitionSpec()),
    )


def batch_sharding(shape: Sequence[int], mesh, rules: Rules = RULES) -> NamedSharding:
    """Input arrays `[B, ...]`: leading dim over data x fsdp, the rest replicated."""
    return named_sharding(shape, ("batch",), mesh, rules)


def position_ids_sharding(shape: Sequence[int], mesh, rules: Rules = RULES) -> NamedSharding:
    """M-RoPE positions `[3, B, L]`: batch is the second dimension."""
    return named_sharding(shape, (None, "batch"), mesh, rules)


def pixel_rows_sharding(shape: Sequence[int], mesh, rules: Rules = RULES) -> NamedSharding:
    """`pixel_values [N_patches, C*T*P*P]`: rows over data x fsdp (replicated if not divisible)."""
    return named_sharding(shape, ("vision_tokens",), mesh, rules)


def abstract_on_mesh(module_or_state, mesh, *filters, rules: Rules = RULES) -> dict:
    """Pure-dict tree of `jax.ShapeDtypeStruct(shape, dtype, sharding=<target>)`, the
    `abstract_state` that `Checkpointer.restore` reads straight into the new mesh (a run
    saved on one mesh shape restores on another: orbax reshards on read)."""
    state = nnx.state(module_or_state, *filters) if filters else nnx.state(module_or_state)
    shardings = state_shardings(state, mesh, rules=rules)
    structs = jax.tree.map(
        lambda v, s: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=s),
        nnx.to_pure_dict(state),
        nnx.to_pure_dict(shardings),
    )
    return structs


def constrain_state(module, mesh, *filters, rules: Rules = RULES) -> None:
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
