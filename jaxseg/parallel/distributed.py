"""Multi-controller start-up: `jax.distributed.initialize` from config and environment.

JAX runs one process per host (per GPU node, per TPU VM worker); every process runs the same
program and `jax.devices()` becomes the global device list after initialisation. Call
`initialize` first thing, before anything touches a JAX backend.

Where the values come from, first hit wins:

1. `config.distributed` fields (coordinator_address, num_processes, process_id,
   local_device_ids);
2. the environment: JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID,
   JAX_LOCAL_DEVICE_IDS (launch/local.sh sets them; jax itself reads the first and last);
3. `auto=True` (or JAXSEG_DISTRIBUTED_AUTO=1): jax's own cluster detection (Cloud TPU pod
   metadata, SLURM, Open MPI, k8s), optionally pinned with `cluster_detection_method`.

With none of these (one process), nothing is initialised: single-host runs need no set-up.
`jaxseg.train.trainer.Experiment` calls `initialize(config.distributed)` before it builds
anything on a device, so `jaxseg train` under launch/ (which sets the environment) joins the
job; a second call in the same process returns the running job's index and count.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any

import jax

ENV = {
    "coordinator_address": "JAX_COORDINATOR_ADDRESS",
    "num_processes": "JAX_NUM_PROCESSES",
    "process_id": "JAX_PROCESS_ID",
    "local_device_ids": "JAX_LOCAL_DEVICE_IDS",
}
AUTO_ENV = "JAXSEG_DISTRIBUTED_AUTO"


class DistributedError(ValueError):
    """Incomplete or inconsistent multi-process settings (names the field and env variable)."""


@dataclasses.dataclass(frozen=True)
class DistributedConfig:
    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    local_device_ids: tuple[int, ...] | None = None
    auto: bool = False
    cluster_detection_method: str | None = None
    initialization_timeout: int = 300

    @property
    def enabled(self) -> bool:
        return (
            self.auto
            or self.coordinator_address is not None
            or (self.num_processes is not None and self.num_processes > 1)
        )


@dataclasses.dataclass(frozen=True)
class ProcessInfo:
    index: int
    count: int
    initialized: bool  # False: single process, jax.distributed was not started


def _parse(field: str, raw: Any, source: str) -> Any:
    if raw is None or raw == "":
        return None
    try:
        if field in ("num_processes", "process_id"):
            return int(raw)
        if field == "local_device_ids":
            if isinstance(raw, str):
                return tuple(int(x) for x in raw.split(",") if x.strip())
            return tuple(int(x) for x in raw)
    except (TypeError, ValueError) as err:
        raise DistributedError(f"{source}: {raw!r} is not a valid {field}") from err
    return str(raw)


def resolve(
    cfg: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
) -> DistributedConfig:
    """DistributedConfig from `config.distributed` (may be None) over the environment."""
    env = os.environ if env is None else env
    cfg = dict(cfg or {})
    known = {f.name for f in dataclasses.fields(DistributedConfig)}
    unknown = sorted(set(cfg) - known)
    if unknown:
        raise DistributedError(
            f"config.distributed: unknown fields {unknown}; known: {sorted(known)}"
        )
    values: dict[str, Any] = {}
    for field, var in ENV.items():
        if cfg.get(field) not in (None, ""):
            values[field] = _parse(field, cfg[field], f"config.distributed.{field}")
        else:
            values[field] = _parse(field, env.get(var), f"environment {var}")
    auto = bool(cfg.get("auto", False)) or env.get(AUTO_ENV, "") in ("1", "true", "True")
    return DistributedConfig(
        **values,
        auto=auto,
        cluster_detection_method=cfg.get("cluster_detection_method"),
        initialization_timeout=int(cfg.get("initialization_timeout", 300)),
    )


def _check(dc: DistributedConfig) -> None:
    if dc.auto:
        return
    for field in ("coordinator_address", "num_processes", "process_id"):
        if getattr(dc, field) is None:
            raise DistributedError(
                f"multi-process run needs {field}: set config.distributed.{field} or "
                f"{ENV[field]} (or auto=True on a TPU pod / SLURM)"
            )
    if not 0 <= dc.process_id < dc.num_processes:
        raise DistributedError(
            f"process_id {dc.process_id} outside [0, num_processes={dc.num_processes})"
        )


def initialize(
    cfg: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    *,
    initialize_fn: Callable[..., None] | None = None,
) -> ProcessInfo:
    """Starts the multi-controller runtime when the settings ask for one; a no-op otherwise.

    Returns this process's index and the process count (after start-up)."""
    dc = resolve(cfg, env)
    if not dc.enabled:
        return ProcessInfo(index=0, count=1, initialized=False)
    _check(dc)
    if initialize_fn is None and jax.distributed.is_initialized():  # e.g. a second Experiment
        return ProcessInfo(index=jax.process_index(), count=jax.process_count(), initialized=True)
    kwargs: dict[str, Any] = dict(initialization_timeout=dc.initialization_timeout)
    if dc.auto:
        if dc.cluster_detection_method:
            kwargs["cluster_detection_method"] = dc.cluster_detection_method
        for field in ("coordinator_address", "num_processes", "process_id"):
            if getattr(dc, field) is not None:
                kwargs[field] = getattr(dc, field)
    else:
        kwargs.update(
            coordinator_address=dc.coordinator_address,
            num_processes=dc.num_processes,
            process_id=dc.process_id,
        )
    if dc.local_device_ids is not None:
        kwargs["local_device_ids"] = list(dc.local_device_ids)
    (initialize_fn or jax.distributed.initialize)(**kwargs)
    return ProcessInfo(index=jax.process_index(), count=jax.process_count(), initialized=True)
