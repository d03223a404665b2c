"""Scale-out: device meshes, the logical-axis sharding rules, placing a run's state on its mesh,
multi-host runtime, sharded weight loading, per-host data and the capacity planner.

Names are imported on first use, so `jaxseg.parallel.topology` (plain Python, used by the
launch scripts) does not pull in JAX.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "MeshConfig": "mesh",
    "MeshError": "mesh",
    "create_mesh": "mesh",
    "device_grid": "mesh",
    "mesh_from_shape": "mesh",
    "RULES": "rules",
    "logical_to_mesh_spec": "rules",
    "batch_sharding": "rules",
    "kv_cache_shardings": "rules",
    "named_sharding": "rules",
    "state_shardings": "rules",
    "abstract_on_mesh": "rules",
    "initialize": "distributed",
    "load_sharded": "weights",
    "to_global": "data",
    "to_host_local": "data",
    "place": "placement",
    "place_batch": "placement",
    "run_mesh": "placement",
    "plan": "planner",
    "parse_topology": "topology",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'jaxseg.parallel' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
