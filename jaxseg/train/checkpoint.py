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

Integrity: every saved array's checksum (a position-weighted sum of its bits, computed on
device, sharding-independent) goes into ``meta`` (``_integrity``) and is verified on
restore, so flipped bytes in the data files are an error, not a silent restore.
`restore_intact` restores the newest step that is intact, saying which newer steps it
skipped and why (an empty or incomplete step folder, missing or unreadable metadata, missing
data files, a checksum mismatch); those steps are moved to ``<dir>/broken/`` (kept, never
deleted). A step whose arrays do not have this run's structure is `CheckpointMismatch`.

Rotation keeps the newest ``max_to_keep`` steps and, always, the newest step whose
``meta["finite"]`` is not False (the trainer marks checkpoints written after a non-finite
step), deleting older ones only once the newer save is durable.
"""

from __future__ import annotations

import base64
import json
import logging
import shutil
import time
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from jaxseg.paths import as_path, is_remote

log = logging.getLogger(__name__)
INTEGRITY = "_integrity"  # meta key: {item: {leaf path: [dtype, shape, checksum]}}
BROKEN = "broken"  # <dir>/broken/<step>-<time>: steps restore found damaged
EMPTY = "empty step folder (a save that never started)"


class CheckpointCorrupt(RuntimeError):
    """A checkpoint step that cannot be restored as saved (the message says why)."""


class CheckpointMismatch(ValueError):
    """An intact step whose arrays do not have the structure this run asked for."""


_UINT = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}


def _leaf_checksum(x: jax.Array) -> jax.Array:
    """sum_i bits_i * w_i mod 2**32 with odd weights w_i: any change of one element changes
    it; integer sums are exact, so the value does not depend on sharding or device."""
    x = jnp.asarray(x)
    if x.dtype == jnp.bool_:
        x = x.astype(jnp.uint8)
    if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    size = x.dtype.itemsize
    if size == 8:
        bits = jax.lax.bitcast_convert_type(x, jnp.uint32)
    else:
        bits = jax.lax.bitcast_convert_type(x, _UINT[size])
    bits = bits.reshape(-1).astype(jnp.uint32)
    idx = jnp.arange(bits.shape[0], dtype=jnp.uint32)
    weights = (idx * jnp.uint32(2654435761)) | jnp.uint32(1)
    return jnp.sum(bits * weights, dtype=jnp.uint32)


@jax.jit
def _tree_checksums(tree: Any) -> Any:
    return jax.tree.map(_leaf_checksum, tree)


def _cause(err: BaseException) -> str:
    """The innermost exception of a chain, on one line (tensorstore's outer ones dump specs)."""
    seen = []
    while err is not None and err not in seen:
        seen.append(err)
        err = err.__cause__ or err.__context__
    root = seen[-1]
    lines = [x.strip() for x in str(root).splitlines() if x.strip()]
    return f"{type(root).__name__}: {lines[0][:400] if lines else ''}"


def _key(k) -> str:
    for attr in ("key", "idx", "name"):  # DictKey, SequenceKey, GetAttrKey (namedtuples)
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def _path(keys) -> str:
    return "/".join(_key(k) for k in keys)


def checksums(tree: Any) -> dict[str, list]:
    """{leaf path: [dtype, shape, checksum]} of an array pytree."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    if not leaves:
        return {}
    sums = jax.device_get(_tree_checksums([v for _, v in leaves]))
    return {
        _path(k): [str(jnp.asarray(v).dtype), list(np.shape(v)), int(c)]
        for (k, v), c in zip(leaves, sums)
    }


def verify(item: str, tree: Any, expected: Mapping[str, list]) -> None:
    """Raises `CheckpointCorrupt` naming the first array whose checksum differs."""
    got = checksums(tree)
    for path, (dtype, shape, value) in got.items():
        want = expected.get(path)
        if want is None or want[0] != dtype or list(want[1]) != shape:
            continue  # restored in another dtype/shape (or not recorded): nothing to compare
        if int(want[2]) != value:
            raise CheckpointCorrupt(
                f"checksum mismatch in {item}/{path} ({dtype}{shape}): the data files of "
                "this step were changed after it was saved"
            )


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
        read_only: bool = False,
    ):
        """`read_only`: a reader of a run that may be training (export, eval, the next
        stage): never deletes, rotates, cleans up partial saves or moves steps."""
        if "meta" in item_names:
            raise ValueError("'meta' is reserved for the JSON item")
        self.item_names = tuple(item_names)
        # a bucket (gs://...) stays an epath; orbax/tensorstore write there directly
        self.directory = as_path(directory) if is_remote(directory) else Path(directory).resolve()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=None,  # rotation is ours (_rotate): it never drops the last finite step
            save_interval_steps=save_interval_steps,
            enable_async_checkpointing=async_save,
            # partial saves of a killed run are removed (not by a reader: the run may be saving)
            cleanup_tmp_directories=not read_only,
            read_only=read_only,
            create=not read_only,
        )
        self.read_only = read_only
        if read_only:
            max_to_keep = None
        self.max_to_keep = max_to_keep
        self._finite: dict[int, bool] = {}
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=(*self.item_names, "meta")
        )

    def _reader(self) -> ocp.CheckpointManager:
        options = ocp.CheckpointManagerOptions(read_only=True, create=False)
        return ocp.CheckpointManager(
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
        meta = dict(meta or {})
        meta[INTEGRITY] = {name: checksums(tree) for name, tree in items.items()}
        args = {name: ocp.args.StandardSave(tree) for name, tree in items.items()}
        args["meta"] = ocp.args.JsonSave(meta)
        self._manager.wait_until_finished()  # the previous save is durable: now rotate
        self._rotate()
        started = self._manager.save(step, args=ocp.args.Composite(**args), force=force)
        if started:
            self._finite[step] = meta.get("finite", True) is not False
        return started

    def _is_finite(self, step: int) -> bool:
        if step not in self._finite:
            try:
                meta = json.loads((self.directory / str(step) / "meta" / "metadata").read_text())
                self._finite[step] = meta.get("finite", True) is not False
            except (OSError, ValueError, AttributeError):
                return False  # unreadable: not a step to protect
        return self._finite[step]

    def _rotate(self) -> None:
        """Deletes all but the newest `max_to_keep` durable steps, never the newest finite
        one."""
        if self.max_to_keep is None:
            return
        steps = sorted(self._manager.all_steps())
        keep = set(steps[-self.max_to_keep :]) if self.max_to_keep > 0 else set()
        for step in reversed(steps):
            if self._is_finite(step):
                keep.add(step)
                break
        for step in steps:
            if step not in keep:
                self._manager.delete(step)
                self._finite.pop(step, None)

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

    def restore(
        self, abstract_state: Any, step: int | None = None, *, unread: Collection[str] = ()
    ) -> tuple[Any, dict[str, Any]]:
        """Restores (state, meta) at ``step`` (default: latest).

        ``abstract_state`` gives the target structure, dtypes and shardings, e.g.
        ``jax.tree.map(ocp.utils.to_shape_dtype_struct, state)`` or a tree of
        ``jax.ShapeDtypeStruct(shape, dtype, sharding=...)`` for a different mesh. With
        several items it is a dict of the items to restore (a subset is fine) and so is the
        returned state. `unread`: keys under which the step may hold arrays the target does
        not name (e.g. an auxiliary head this run no longer has); they are left unread.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        if step not in self._manager.all_steps():
            raise FileNotFoundError(
                f"no checkpoint for step {step} in {self.directory}; have {self.all_steps()}"
            )
        items = self._items(abstract_state)
        self._check_files(step, items, unread)
        if unread:
            args = {
                name: ocp.args.PyTreeRestore(
                    tree,
                    restore_args=ocp.checkpoint_utils.construct_restore_args(tree),
                    partial_restore=True,
                )
                for name, tree in items.items()
            }
        else:
            args = {name: ocp.args.StandardRestore(tree) for name, tree in items.items()}
        args["meta"] = ocp.args.JsonRestore()
        where = f"{self.directory / str(step)}"
        # a partial read binds the items to orbax's PyTree handler; this manager's saves use
        # the Standard one, so the read goes through a reader of its own
        manager = self._manager if not unread else self._reader()
        try:
            restored = manager.restore(step, args=ocp.args.Composite(**args))
        except CheckpointMismatch:
            raise
        except Exception as err:  # orbax/tensorstore: missing or unreadable data files
            raise CheckpointCorrupt(f"{where}: reading the arrays failed ({_cause(err)})") from err
        finally:
            if manager is not self._manager:
                manager.close()
        state = {name: restored[name] for name in items}
        meta = dict(restored["meta"] or {})
        sums = meta.pop(INTEGRITY, None)
        if sums is not None:
            for name, tree in state.items():
                try:
                    verify(name, tree, sums.get(name, {}))
                except CheckpointCorrupt as err:
                    raise CheckpointCorrupt(f"{where}: {err}") from None
        return (state["state"] if self.item_names == ("state",) else state), meta

    def _check_files(
        self, step: int, items: Mapping[str, Any], unread: Collection[str] = ()
    ) -> None:
        """The precise reason a step's files cannot be what `restore` needs, before orbax
        gives a generic one: `CheckpointCorrupt`, or `CheckpointMismatch` for intact arrays
        of another structure or shape."""
        where = self.directory / str(step)
        if not where.is_dir() or not any(where.iterdir()):
            raise CheckpointCorrupt(f"{where}: {EMPTY}")
        for name in (*items, "meta"):
            item = where / name
            if not item.is_dir():
                raise CheckpointCorrupt(f"{where}: item folder {name!r} is missing")
            if name == "meta":
                path = item / "metadata"
                if not path.is_file():
                    raise CheckpointCorrupt(f"{path}: missing (the step's JSON metadata)")
                try:
                    json.loads(path.read_text())
                except ValueError as err:
                    raise CheckpointCorrupt(f"{path}: not valid JSON ({err})") from None
                continue
            saved = self.saved_paths(step, name)
            wanted = {
                tuple(_key(k) for k in keys)
                for keys, _ in jax.tree_util.tree_flatten_with_path(items[name])[0]
            }
            unexpected = {k for k in saved - wanted if not set(k) & set(unread)}
            if wanted - saved or unexpected:
                missing = sorted("/".join(k) for k in wanted - saved)
                extra = sorted("/".join(k) for k in unexpected)
                raise CheckpointMismatch(
                    f"{where}: item {name!r} holds other arrays than this run's "
                    f"({len(missing)} wanted but absent, e.g. {missing[:3]}; {len(extra)} "
                    f"saved but not wanted, e.g. {extra[:3]})"
                )
            if not (item / "manifest.ocdbt").is_file() and not list(item.glob("*/.zarray")):
                raise CheckpointCorrupt(f"{item}: the array data files are missing")
            shapes = self.saved_shapes(step, name)
            reshaped = sorted(
                f"{'/'.join(path)} {shapes[path]} -> {tuple(value.shape)}"
                for keys, value in jax.tree_util.tree_flatten_with_path(items[name])[0]
                if (path := tuple(_key(k) for k in keys)) in shapes
                and hasattr(value, "shape")
                and tuple(shapes[path]) != tuple(value.shape)
            )
            if reshaped:
                raise CheckpointMismatch(
                    f"{where}: item {name!r} holds arrays of other shapes than this run's "
                    f"({len(reshaped)}, e.g. {reshaped[:3]})"
                )

    def saved_paths(self, step: int, name: str) -> set[tuple[str, ...]]:
        """The key paths of the arrays item `name` of `step` holds (from orbax's metadata,
        without reading them); `CheckpointCorrupt` when that metadata is missing or bad."""
        path = self.directory / str(step) / name / "_METADATA"
        if not path.is_file():
            raise CheckpointCorrupt(f"{path}: missing (orbax's array metadata of {name!r})")
        try:
            tree = json.loads(path.read_text())["tree_metadata"]
            return {  # empty nodes (None, optax's EmptyState) are not arrays
                tuple(str(k["key"]) for k in v["key_metadata"])
                for v in tree.values()
                if not v.get("value_metadata", {}).get("skip_deserialize", False)
            }
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise CheckpointCorrupt(
                f"{path}: unreadable orbax metadata ({type(err).__name__}: {err})"
            ) from None

    def saved_shapes(self, step: int, name: str) -> dict[tuple[str, ...], tuple[int, ...]]:
        """{key path: shape} of the arrays item `name` of `step` holds (orbax's metadata, no
        array read); `CheckpointCorrupt` when that metadata is missing or bad."""
        path = self.directory / str(step) / name
        try:
            with ocp.StandardCheckpointer() as reader:
                meta = reader.metadata(path)
            tree = getattr(meta, "item_metadata", meta)
            flat = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: hasattr(x, "shape"))
            return {tuple(_key(k) for k in p): tuple(v.shape) for p, v in flat[0]}
        except Exception as err:  # orbax: missing or unreadable metadata
            raise CheckpointCorrupt(f"{path}: unreadable array metadata ({_cause(err)})") from None

    def restore_intact(
        self, abstract_state: Any, *, quarantine: bool = True, unread: Collection[str] = ()
    ) -> tuple[int | None, Any, dict[str, Any], list[tuple[int, str]]]:
        """(step, state, meta, skipped) of the newest step that restores intact; `skipped`:
        (step, reason) of each newer step that did not (moved to ``<dir>/broken/`` when an
        older step was intact and `quarantine`). (None, None, {}, skipped) without
        checkpoints, or when the only ones are empty step folders (moved aside: the stage
        starts over); `CheckpointCorrupt` listing every reason when no step is intact;
        `CheckpointMismatch` at once for a step of another structure."""
        skipped: list[tuple[int, str]] = []
        for step in sorted(self.all_steps(), reverse=True):
            try:
                state, meta = self.restore(abstract_state, step, unread=unread)
            except CheckpointCorrupt as err:
                skipped.append((step, str(err)))
                log.warning("checkpoint step %d skipped: %s", step, err)
                continue
            if skipped and quarantine and not self.read_only and jax.process_index() == 0:
                self._quarantine([s for s, _ in skipped])
            return step, state, meta, skipped
        if skipped and all(EMPTY in r for _, r in skipped):
            # only folders of saves that never started: nothing to lose, start the stage over
            if quarantine and not self.read_only and jax.process_index() == 0:
                self._quarantine([s for s, _ in skipped])
            return None, None, {}, skipped
        if skipped:
            reasons = "; ".join(f"step {s}: {r}" for s, r in skipped)
            raise CheckpointCorrupt(
                f"{self.directory}: no intact checkpoint ({reasons}). Move the folder aside "
                "to start this stage over."
            )
        return None, None, {}, []

    def _quarantine(self, steps: list[int]) -> None:
        """Moves damaged steps out of the step list (kept for inspection, never deleted), so
        the run saves those step numbers again."""
        self._manager.wait_until_finished()
        stamp = time.strftime("%Y%m%dT%H%M%S")
        (self.directory / BROKEN).mkdir(exist_ok=True)
        for step in steps:
            src = self.directory / str(step)
            if src.exists():
                shutil.move(str(src), str(self.directory / BROKEN / f"{step}-{stamp}"))
            self._finite.pop(step, None)
        self._manager.reload()

    def wait(self) -> None:
        self._manager.wait_until_finished()
        self._rotate()  # the newest save is durable: older steps beyond keep-N can go

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._rotate()
        self._manager.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def abstract_like(tree: Any) -> Any:
    """The abstract (shape, dtype, sharding) tree of ``tree``, for :meth:`Checkpointer.restore`."""
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)
