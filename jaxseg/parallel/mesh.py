"""Device mesh from config: ('data', 'fsdp', 'tensor') axes, ICI shape per slice, DCN shape
across slices.

Follows maxtext's `ici_*_parallelism` / `dcn_*_parallelism` (`maxtext_utils.create_device_mesh`)
and flax's `examples/gemma`: the final mesh axis i has size `ici[i] * dcn[i]`; the ICI part is
laid out inside one slice (fast interconnect: TPU ICI, NVLink inside a GPU node), the DCN
part across slices (data-centre network: multi-slice TPU, or across GPU nodes with
`granule="process"`). One entry of each shape may be -1 ("fill with what is left").

Config block (ml_collections, see configs/qwen2_5_vl_3b_grpo.py):

    config.mesh = ConfigDict(dict(axes=("data", "fsdp", "tensor"),
                                  ici=(1, -1, 1), dcn=(1, 1, 1), granule="slice"))

Meshes use Auto axis mode: the model code relies on GSPMD propagation from the parameter
shardings (jaxseg/parallel/rules.py).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.experimental import mesh_utils
from jax.sharding import Mesh

DEFAULT_AXES = ("data", "fsdp", "tensor")
GRANULES = ("slice", "process")


class MeshError(ValueError):
    """A mesh config that cannot be laid out on the available devices (names the field)."""


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """axes: mesh axis names; ici: per-slice shape; dcn: across-slice shape (same length);
    granule: what one DCN unit is, a TPU slice ("slice") or a host/process ("process", for
    GPU nodes whose NVLink island is one host)."""

    axes: tuple[str, ...] = DEFAULT_AXES
    ici: tuple[int, ...] = (1, -1, 1)
    dcn: tuple[int, ...] = (1, 1, 1)
    granule: str = "slice"

    def __post_init__(self):
        object.__setattr__(self, "axes", tuple(self.axes))
        object.__setattr__(self, "ici", tuple(int(x) for x in self.ici))
        object.__setattr__(self, "dcn", tuple(int(x) for x in self.dcn))
        if len(set(self.axes)) != len(self.axes):
            raise MeshError(f"mesh.axes has repeated names: {self.axes}")
        for field in ("ici", "dcn"):
            shape = getattr(self, field)
            if len(shape) != len(self.axes):
                raise MeshError(
                    f"mesh.{field} = {shape} has {len(shape)} entries, mesh.axes = {self.axes} "
                    f"has {len(self.axes)}"
                )
            if sum(x == -1 for x in shape) > 1 or any(x == 0 or x < -1 for x in shape):
                raise MeshError(
                    f"mesh.{field} = {shape}: entries must be positive, at most one may be -1"
                )
        if self.granule not in GRANULES:
            raise MeshError(f"mesh.granule must be one of {GRANULES}, got {self.granule!r}")

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> MeshConfig:
        """From a `config.mesh` ConfigDict/dict; missing keys take the defaults."""
        if cfg is None:
            return cls()
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise MeshError(f"config.mesh: unknown fields {unknown}; known: {sorted(known)}")
        return cls(**{k: (tuple(v) if isinstance(v, list | tuple) else v) for k, v in cfg.items()})


def fill_shape(shape: Sequence[int], total: int, what: str) -> tuple[int, ...]:
    """Replaces the (at most one) -1 in `shape` so the product is `total`; checks the product."""
    shape = tuple(int(x) for x in shape)
    known = math.prod(x for x in shape if x != -1)
    if -1 in shape:
        if total % known:
            raise MeshError(f"{what} = {shape}: {total} is not divisible by {known}")
        shape = tuple(total // known if x == -1 else x for x in shape)
    if math.prod(shape) != total:
        raise MeshError(f"{what} = {shape} has {math.prod(shape)} devices, need {total}")
    return shape


def _num_granules(devices: Sequence[Any], granule: str) -> int:
    attr = "slice_index" if granule == "slice" else "process_index"
    return len({getattr(d, attr, 0) for d in devices})


def resolve_shapes(
    cfg: MeshConfig, devices: Sequence[Any]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(ici, dcn) with -1 filled: dcn fills the number of granules (slices or processes),
    ici fills the devices of one granule."""
    n = len(devices)
    dcn = cfg.dcn
    if -1 in dcn:
        dcn = fill_shape(dcn, _num_granules(devices, cfg.granule), "mesh.dcn")
    if n % math.prod(dcn):
        raise MeshError(f"mesh.dcn = {dcn}: {n} devices do not split into {math.prod(dcn)} parts")
    ici = fill_shape(cfg.ici, n // math.prod(dcn), "mesh.ici")
    return ici, dcn


def device_grid(cfg: MeshConfig, devices: Sequence[Any] | None = None) -> np.ndarray:
    """The device array of the mesh, shape `ici * dcn` elementwise.

    One granule: `mesh_utils.create_device_mesh` (topology-aware on TPU). Several:
    `mesh_utils.create_hybrid_device_mesh`, which keeps each ICI block inside one slice
    (or process) so only the DCN axes cross the slow network."""
    devices = list(jax.devices() if devices is None else devices)
    ici, dcn = resolve_shapes(cfg, devices)
    if math.prod(dcn) == 1:
        return mesh_utils.create_device_mesh(ici, devices, allow_split_physical_axes=True)
    granules = _num_granules(devices, cfg.granule)
    if granules != math.prod(dcn):
        raise MeshError(
            f"mesh.dcn = {dcn} asks for {math.prod(dcn)} {cfg.granule}s, the devices form "
            f"{granules}"
        )
    return mesh_utils.create_hybrid_device_mesh(
        ici,
        dcn,
        devices,
        process_is_granule=cfg.granule == "process",
        allow_split_physical_axes=True,
    )


def create_mesh(cfg: MeshConfig | Mapping[str, Any] | None = None, devices=None) -> Mesh:
    """A Mesh in Auto axis mode from a MeshConfig (or a `config.mesh` block)."""
    if not isinstance(cfg, MeshConfig):
        cfg = MeshConfig.from_config(cfg)
    grid = device_grid(cfg, devices)
    auto = (jax.sharding.AxisType.Auto,) * len(cfg.axes)
    return Mesh(grid, cfg.axes, axis_types=auto)


def mesh_from_shape(shape: Sequence[int], axes: Sequence[str] = DEFAULT_AXES) -> Mesh:
    """Single-slice mesh of exactly `shape` (tests, scripts): `mesh_from_shape((1, 2, 4))`."""
    n = math.prod(shape)
    devices = jax.devices()
    if n > len(devices):
        raise MeshError(f"mesh shape {tuple(shape)} needs {n} devices, have {len(devices)}")
    return create_mesh(
        MeshConfig(axes=tuple(axes), ici=tuple(shape), dcn=(1,) * len(axes)), devices[:n]
    )
