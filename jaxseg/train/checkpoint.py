"""Atomic, resumable training checkpoints on orbax.

One checkpoint per step holds everything a crash must not lose, as separate orbax items:

- array items (default one, ``state``; a trainer uses ``params`` and ``opt``): pytrees
  restored straight into the target shardings of an abstract tree (so a run saved on one
  mesh restores on another); any subset of them can be restored (e.g. only ``params`` of an
  SFT checkpoint to start GRPO with a fresh optimizer);
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
        item_names: tuple[str, ...] = ("state",),
    ):
        if "meta" in item_names:
            raise ValueError("'meta' is reserved for the JSON item")
        self.item_names = tuple(item_names)
        self.directory = Path(directory).resolve()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep,
            save_interval_steps=save_interval_steps,
            enable_async_checkpointing=async_save,
            cleanup_tmp_directories=True,  # partial saves of a killed run are removed
        )
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=(*self.item_names, "meta")
        )

    def save(
        self,
        step: int,
        state: Any,
        meta: Mapping[str, Any] | None = None,
        *,
        force: bool = False,
    ) -> bool:
        """Starts saving ``state`` and ``meta`` (JSON-able) at ``step``. ``state`` is the array
        pytree of the single item ``state``, or a dict item name -> pytree.

        Returns whether a save was started (``save_interval_steps`` may skip it).
        """
        items = self._items(state)
        args = {name: ocp.args.StandardSave(tree) for name, tree in items.items()}
        args["meta"] = ocp.args.JsonSave(dict(meta or {}))
        return self._manager.save(step, args=ocp.args.Composite(**args), force=force)

    def _items(self, tree: Any) -> dict[str, Any]:
        if self.item_names == ("state",):
            return {"state": tree}
        if not isinstance(tree, Mapping) or set(tree) - set(self.item_names):
            raise ValueError(f"checkpoint items must be a dict with keys in {self.item_names}")
        return dict(tree)

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, dict[str, Any]]:
        """Restores (state, meta) at ``step`` (default: latest).

        ``abstract_state`` gives the target structure, dtypes and shardings, e.g.
        ``jax.tree.map(ocp.utils.to_shape_dtype_struct, state)`` or a tree of
        ``jax.ShapeDtypeStruct(shape, dtype, sharding=...)`` for a different mesh. With
        several items it is a dict of the items to restore (a subset is fine) and so is the
        returned state.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        if step not in self._manager.all_steps():
            raise FileNotFoundError(
                f"no checkpoint for step {step} in {self.directory}; have {self.all_steps()}"
            )
        items = self._items(abstract_state)
        args = {name: ocp.args.StandardRestore(tree) for name, tree in items.items()}
        args["meta"] = ocp.args.JsonRestore()
        restored = self._manager.restore(step, args=ocp.args.Composite(**args))
        state = {name: restored[name] for name in items}
        meta = dict(restored["meta"] or {})
        return (state["state"] if self.item_names == ("state",) else state), meta

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
