"""Atomic, resumable training checkpoints on orbax.

One checkpoint per step holds everything a crash must not lose, as separate orbax items:

- ``state``: the array pytree (params, optimizer state, RNG key data, step, ...), restored
  straight into the target shardings of an abstract tree (so a run saved on one mesh
  restores on another);
- ``meta``: JSON (data-iterator state, config snapshot, anything host-side).

orbax writes each step into a temporary directory and renames it when complete, so a run
killed mid-save leaves the previous step intact; ``latest_step`` never returns a partial
step. Saves are asynchronous (the train loop continues while arrays are written);
``wait()``/``close()`` block until they are durable.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp


def key_to_data(key: jax.Array) -> jax.Array:
    """A typed PRNG key -> its raw uint32 data (orbax stores plain arrays)."""
    return jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key


def data_to_key(data: jax.Array, impl: str | None = None) -> jax.Array:
    return jax.random.wrap_key_data(data, impl=impl)


def encode_bytes(blob: bytes) -> str:
    """Iterator states from grain are bytes; JSON carries them as base64."""
    return base64.b64encode(blob).decode("ascii")


def decode_bytes(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"))


class Checkpointer:
    """Keeps the newest ``max_to_keep`` steps of a run in ``directory``."""

    def __init__(
        self,
        directory: str | Path,
        *,
        max_to_keep: int | None = 3,
        save_interval_steps: int = 1,
        async_save: bool = True,
    ):
        self.directory = Path(directory).resolve()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep,
            save_interval_steps=save_interval_steps,
            enable_async_checkpointing=async_save,
            cleanup_tmp_directories=True,  # partial saves of a killed run are removed
        )
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("state", "meta")
        )

    def save(
        self,
        step: int,
        state: Any,
        meta: Mapping[str, Any] | None = None,
        *,
        force: bool = False,
    ) -> bool:
        """Starts saving ``state`` (array pytree) and ``meta`` (JSON-able) at ``step``.

        Returns whether a save was started (``save_interval_steps`` may skip it).
        """
        return self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(dict(meta or {}))
            ),
            force=force,
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, dict[str, Any]]:
        """Restores (state, meta) at ``step`` (default: latest).

        ``abstract_state`` gives the target structure, dtypes and shardings, e.g.
        ``jax.tree.map(ocp.utils.to_shape_dtype_struct, state)`` or a tree of
        ``jax.ShapeDtypeStruct(shape, dtype, sharding=...)`` for a different mesh.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        if step not in self._manager.all_steps():
            raise FileNotFoundError(
                f"no checkpoint for step {step} in {self.directory}; have {self.all_steps()}"
            )
        restored = self._manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()
            ),
        )
        return restored["state"], dict(restored["meta"] or {})

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def abstract_like(tree: Any) -> Any:
    """The abstract (shape, dtype, sharding) tree of ``tree``, for :meth:`Checkpointer.restore`."""
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)
