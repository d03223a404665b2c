"""Host-side work split over the processes of a multi-controller run.

Every process runs the same program; each reads its contiguous share of a step's records
(jaxseg.data.pipeline.step_feed) and does that share of the host work (rollouts, their SAM2
rewards); these helpers bring the results back together and say who writes files. With one
process each is the identity (or a no-op), so the trainer keeps one code path:

    episodes = rollouts(data.items)            # this host's prompts, own mask backend
    everything = allgather_objects(local_examples)   # [host 0's, host 1's, ...]
    if is_writer(): write_metrics(...)

Why an allgather of host-built examples rather than `data.to_global` of padded rows: a
PolicyBatch's vision fields are global (the patches of all rows concatenated in row order
plus one window layout over them), so per-host pixel blocks cannot simply be stacked; the
examples are small next to the rollouts that made them, and with the same examples in the
same order every host builds the same micro-batches the single-process run builds.
"""

from __future__ import annotations

import pickle
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import Mesh


def is_writer() -> bool:
    """Process 0 writes metrics, eval files and reports; the others only compute."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Waits until every process reaches `name` (e.g. before reading what process 0 wrote)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def agree_max(x: int) -> int:
    """The largest `x` over all processes (e.g. a padded length every host must use)."""
    if jax.process_count() == 1:
        return int(x)
    return int(np.max(multihost_utils.process_allgather(np.asarray([x], np.int64))))


def allgather_objects(obj: Any) -> list[Any]:
    """Every process's `obj` (picklable), in process order, on every process ([obj] for one
    process). Pickled bytes padded to the longest, gathered with `process_allgather`."""
    if jax.process_count() == 1:
        return [obj]
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    row = pack_bytes(data, agree_max(len(data)))
    rows = np.asarray(multihost_utils.process_allgather(row))  # [processes, size + 8]
    return [pickle.loads(unpack_bytes(r)) for r in rows]


def pack_bytes(data: bytes, size: int) -> np.ndarray:
    """`data` as a uint8 row of `size + 8`: its length (int64), the bytes, zero padding."""
    if len(data) > size:
        raise ValueError(f"{len(data)} bytes do not fit a row of {size}")
    row = np.zeros(size + 8, np.uint8)
    row[:8] = np.frombuffer(np.int64(len(data)).tobytes(), np.uint8)
    row[8 : 8 + len(data)] = np.frombuffer(data, np.uint8)
    return row


def unpack_bytes(row: np.ndarray) -> bytes:
    """Inverse of `pack_bytes`."""
    n = int(np.frombuffer(np.asarray(row[:8], np.uint8).tobytes(), np.int64)[0])
    return np.asarray(row[8 : 8 + n], np.uint8).tobytes()


def local_mesh(mesh: Mesh) -> Mesh:
    """A mesh over this process's devices with `mesh`'s axis names: every local device on the
    fsdp axis (or the first axis when there is none), the other axes of size 1."""
    devices = np.asarray(jax.local_devices())
    names = tuple(mesh.axis_names)
    shape = [1] * len(names)
    shape[names.index("fsdp") if "fsdp" in names else 0] = devices.size
    return Mesh(devices.reshape(shape), names)


def local_replica(module: nnx.Module, mesh: Mesh | None, place_fn) -> nnx.Module:
    """A copy of `module` that lives on this process's devices only (`place_fn(copy, mesh)`
    with `local_mesh(mesh)`), for work each host does on its own rows (its rollouts). One
    process: `module` itself. Costs one gather of the variables to host memory per call."""
    if mesh is None or jax.process_count() == 1:
        return module
    graphdef, state = nnx.split(module)
    values = multihost_utils.process_allgather(state, tiled=True)
    copy = nnx.merge(graphdef, jax.tree.map(np.asarray, values))
    return place_fn(copy, local_mesh(mesh))


class Discard:
    """A MetricsLogger stand-in for the processes that do not write (`log` drops the record)."""

    def log(self, kind: str, step: int, metrics: Any) -> None:
        del kind, step, metrics

    def rewind(self, next_step: int) -> int:
        del next_step
        return 0

    def __enter__(self) -> Discard:
        return self

    def __exit__(self, *exc) -> None:
        return None
