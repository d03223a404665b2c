"""Scale-out: device meshes, sharding rules, multi-host runtime, sharded weight loading, per-host
data and the capacity planner (issue #9)."""

from .mesh import MeshConfig, MeshError, create_mesh, device_grid, mesh_from_shape
from .rules import (
    RULES,
    batch_sharding,
    kv_cache_shardings,
    named_sharding,
    state_shardings,
)

__all__ = [
    "RULES",
    "MeshConfig",
    "MeshError",
    "batch_sharding",
    "create_mesh",
    "device_grid",
    "kv_cache_shardings",
    "mesh_from_shape",
    "named_sharding",
    "state_shardings",
]
