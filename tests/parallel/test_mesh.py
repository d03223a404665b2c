"""Mesh from config: -1 fill, ICI x DCN layout (fake multi-slice devices), loud errors."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest
from ml_collections import ConfigDict

from jaxseg.parallel.mesh import (
    MeshConfig,
    MeshError,
    create_mesh,
    device_grid,
    fill_shape,
    mesh_from_shape,
    resolve_shapes,
)


@dataclasses.dataclass(frozen=True)
class FakeDevice:
    """What mesh_utils reads of a device, for topologies this machine does not have."""

    id: int
    slice_index: int
    process_index: int
    platform: str = "cpu"
    device_kind: str = "fake"


def fake_devices(n: int, per_slice: int, per_process: int) -> list[FakeDevice]:
    return [FakeDevice(i, i // per_slice, i // per_process) for i in range(n)]


def test_fill_shape():
    assert fill_shape((1, -1, 2), 8, "x") == (1, 4, 2)
    assert fill_shape((2, 2, 2), 8, "x") == (2, 2, 2)
    with pytest.raises(MeshError, match="not divisible"):
        fill_shape((3, -1, 1), 8, "mesh.ici")
    with pytest.raises(MeshError, match="need 8"):
        fill_shape((2, 2, 1), 8, "mesh.ici")


def test_create_mesh_from_config_block_fills_and_is_auto_mode():
    cfg = ConfigDict(dict(axes=("data", "fsdp", "tensor"), ici=(2, -1, 2), dcn=(1, 1, 1)))
    mesh = create_mesh(cfg)
    assert dict(mesh.shape) == {"data": 2, "fsdp": 2, "tensor": 2}
    assert all(t == jax.sharding.AxisType.Auto for t in mesh.axis_types)
    assert sorted(d.id for d in mesh.devices.ravel()) == list(range(8))
    assert dict(create_mesh(None).shape) == {"data": 1, "fsdp": 8, "tensor": 1}


def test_mesh_from_shape_uses_a_prefix_of_devices_and_checks_count():
    assert mesh_from_shape((1, 2, 2)).devices.size == 4
    with pytest.raises(MeshError, match="needs 16 devices"):
        mesh_from_shape((2, 4, 2))


def test_multislice_keeps_ici_blocks_inside_one_slice():
    devices = fake_devices(16, per_slice=8, per_process=4)  # 2 slices x 2 hosts x 4 chips
    cfg = MeshConfig(ici=(1, 4, 2), dcn=(-1, 1, 1))
    assert resolve_shapes(cfg, devices) == ((1, 4, 2), (2, 1, 1))
    grid = device_grid(cfg, devices)
    assert grid.shape == (2, 4, 2)
    slices = np.vectorize(lambda d: d.slice_index)(grid)
    # Only the DCN axis ('data') crosses slices.
    assert (slices[0] == 0).all() and (slices[1] == 1).all()
    assert sorted(d.id for d in grid.ravel()) == list(range(16))


def test_process_granule_for_gpu_nodes():
    devices = [dataclasses.replace(d, slice_index=0) for d in fake_devices(16, 16, 8)]
    cfg = MeshConfig(ici=(1, 8, 1), dcn=(-1, 1, 1), granule="process")  # 2 nodes x 8 GPUs
    grid = device_grid(cfg, devices)
    procs = np.vectorize(lambda d: d.process_index)(grid)
    assert grid.shape == (2, 8, 1)
    assert (procs[0] == 0).all() and (procs[1] == 1).all()


def test_dcn_that_does_not_match_the_slices_is_an_error():
    devices = fake_devices(16, per_slice=8, per_process=4)
    with pytest.raises(MeshError, match="asks for 4 slices"):
        device_grid(MeshConfig(ici=(1, 4, 1), dcn=(4, 1, 1)), devices)


@pytest.mark.parametrize(
    "fields, match",
    [
        (dict(ici=(1, 8)), "mesh.ici"),
        (dict(ici=(-1, -1, 1)), "at most one may be -1"),
        (dict(dcn=(0, 1, 1)), "mesh.dcn"),
        (dict(granule="rack"), "granule"),
        (dict(axes=("data", "data", "tensor")), "repeated"),
    ],
)
def test_bad_mesh_config_names_the_field(fields, match):
    with pytest.raises(MeshError, match=match):
        MeshConfig(**fields)


def test_unknown_config_field_is_an_error():
    with pytest.raises(MeshError, match="unknown fields"):
        MeshConfig.from_config({"ici": (1, -1, 1), "icii": (2,)})
