"""Hugging Face safetensors straight into target shardings, one device slice at a time.

`jaxseg.models.qwen2_5_vl.from_pretrained(mesh=...)` reads every tensor whole on the host and
then `device_put`s it: fine on one host, but on a pod every host would read (and hold) the full
checkpoint. Here each parameter is built with `jax.make_array_from_callback`: the callback runs
once per *addressable* device and reads only that device's slice through safetensors'
`get_slice` (memory-mapped; levanter's `_load_safe_tensors` does the same). A host therefore reads only the shards its own devices hold, and host memory holds at
most one parameter's local shards at a time.

The HF name <-> nnx path table is the model family's (`jaxseg.models.family`), the layout
transforms and the error class are jaxseg.models.hf_weights'; the checks are the same: a tensor with no parameter, a
parameter no tensor fills, or a shape mismatch raises `WeightsError` naming the tensor.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors import safe_open

from jaxseg.models.family import family_of_checkpoint
from jaxseg.models.hf_weights import WeightsError, checkpoint_files, expected_hf_shape

from .rules import RULES, Rules, variable_sharding

ReadHook = Callable[[str, tuple[int, ...]], None]


def hf_index(nnx_index: tuple[slice, ...], transform: str) -> tuple[slice, ...]:
    """The slice of the HF tensor that holds `nnx_index` of the nnx parameter.

    id: same slice; t (`kernel [in, out]` = `weight [out, in]`.T): swapped; patch
    (`kernel [C*T*P*P, D]` from `weight [D, C, T, P, P]`): the D slice, all of C/T/P/P."""
    if transform == "id":
        return nnx_index
    if transform == "t":
        return (nnx_index[1], nnx_index[0])
    if transform == "patch":
        return (nnx_index[1],)
    raise AssertionError(transform)


def from_hf_slice(block: np.ndarray, nnx_index: tuple[slice, ...], transform: str) -> np.ndarray:
    """HF block read with `hf_index` -> the nnx slice."""
    if transform == "id":
        return block
    if transform == "t":
        return block.T
    if transform == "patch":  # [d, C, T, P, P] -> [C*T*P*P, d], then the row slice
        return block.reshape(block.shape[0], -1).T[nnx_index[0]]
    raise AssertionError(transform)


def _normalise(index: tuple[slice, ...], shape: tuple[int, ...]) -> tuple[slice, ...]:
    index = tuple(index) + (slice(None),) * (len(shape) - len(index))
    return tuple(slice(*s.indices(n)[:2]) for s, n in zip(index, shape, strict=True))


def load_sharded(
    directory: str | Path,
    mesh: jax.sharding.Mesh,
    *,
    dtype: jnp.dtype = jnp.float32,
    param_dtype: jnp.dtype | None = None,
    rules: Rules = RULES,
    on_read: ReadHook | None = None,
) -> nnx.Module:
    """A policy (any family, from config.json's model_type) from an HF checkpoint directory, every parameter placed on `mesh` with its
    logical-axis rule, each device's slice read directly from the safetensors file.

    `on_read(hf_name, shape_read)` is called for every slice read from disk (tests and
    accounting). Slices repeated on several devices (replicated dimensions) are read once per
    host. With `tie_word_embeddings`, a stored `lm_head.weight` is skipped, not compared (that
    check needs the whole tensor; `from_pretrained` does it)."""
    directory = Path(directory)
    param_dtype = dtype if param_dtype is None else param_dtype
    family = family_of_checkpoint(directory)
    table = family.weight_table
    config = family.config_from_json(directory / "config.json")
    abstract = nnx.eval_shape(
        lambda: family.build(config, dtype=dtype, param_dtype=param_dtype, rngs=nnx.Rngs(0))
    )
    targets = {
        ".".join(str(k) for k in path): var
        for path, var in nnx.to_flat_state(nnx.state(abstract, nnx.Param))
    }
    with contextlib.ExitStack() as stack:
        # nnx path -> (open file, HF name, transform)
        sources: dict[str, tuple[object, str, str]] = {}
        unexpected: list[str] = []
        for file in checkpoint_files(directory):
            handle = stack.enter_context(safe_open(file, framework="numpy"))
            for name in handle.keys():
                mapped = table.hf_to_nnx_path(name)
                if mapped is None:
                    unexpected.append(name)
                    continue
                path, transform = mapped
                if path == "lm_head.kernel" and config.tie_word_embeddings:
                    continue
                if path not in targets:
                    unexpected.append(name)
                    continue
                if path in sources:
                    raise WeightsError(f"{directory}: tensor {name!r} appears twice (as {path})")
                shape = tuple(handle.get_slice(name).get_shape())
                want = expected_hf_shape(targets[path].shape, transform, config)
                if shape != want:
                    raise WeightsError(
                        f"{directory}: tensor {name!r} has shape {list(shape)}, expected "
                        f"{list(want)} for parameter {path}"
                    )
                sources[path] = (handle, name, transform)
        if unexpected:
            raise WeightsError(
                f"{directory}: unexpected tensors (no parameter): {sorted(unexpected)}"
            )
        missing = sorted(set(targets) - set(sources))
        if missing:
            raise WeightsError(
                f"{directory}: missing tensors: {[table.nnx_path_to_hf(p)[0] for p in missing]}"
            )

        for path, var in targets.items():
            handle, name, transform = sources[path]
            var.set_value(
                _sharded_array(handle, name, transform, var, mesh, rules, param_dtype, on_read)
            )
    return abstract


def _sharded_array(handle, name, transform, var, mesh, rules, param_dtype, on_read) -> jax.Array:
    shape = tuple(var.shape)
    sharding = variable_sharding(var, mesh, rules)
    reads: dict[tuple, np.ndarray] = {}

    def read(index: tuple[slice, ...]) -> np.ndarray:
        index = _normalise(index, shape)
        key = tuple((s.start, s.stop) for s in index)
        if key not in reads:
            block = handle.get_slice(name)[hf_index(index, transform)]
            if on_read is not None:
                on_read(name, tuple(block.shape))
            reads[key] = np.ascontiguousarray(from_hf_slice(block, index, transform)).astype(
                param_dtype
            )
        return reads[key]

    return jax.make_array_from_callback(shape, sharding, read)
