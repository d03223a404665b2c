"""The object allgather's byte rows, and the single-process identities (the
2-process run is in test_distributed.py)."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jaxseg.parallel import hosts, mesh_from_shape


def _as_process(monkeypatch, index: int, count: int) -> None:
    monkeypatch.setattr(jax, "process_index", lambda: index)
    monkeypatch.setattr(jax, "process_count", lambda: count)


def test_only_process_zero_writes(monkeypatch):
    _as_process(monkeypatch, 0, 2)
    assert hosts.is_writer()
    _as_process(monkeypatch, 1, 2)
    assert not hosts.is_writer()


def test_one_process_is_the_identity():
    obj = {"x": np.arange(3)}
    assert hosts.allgather_objects(obj)[0] is obj
    assert hosts.agree_max(7) == 7
    hosts.barrier("nothing to wait for")
    module = object()
    assert hosts.local_replica(module, mesh_from_shape((2, 2, 2)), None) is module


@given(st.binary(max_size=64), st.integers(0, 16))
def test_byte_rows_round_trip(data, extra):
    row = hosts.pack_bytes(data, len(data) + extra)
    assert row.shape == (len(data) + extra + 8,) and row.dtype == np.uint8
    assert hosts.unpack_bytes(row) == data


def test_byte_row_too_small_is_an_error():
    with pytest.raises(ValueError, match="5 bytes do not fit a row of 4"):
        hosts.pack_bytes(b"12345", 4)


def test_local_mesh_keeps_the_axis_names_on_this_process_devices():
    mesh = mesh_from_shape((2, 2, 2))
    local = hosts.local_mesh(mesh)
    assert local.axis_names == mesh.axis_names
    assert dict(local.shape) == {"data": 1, "fsdp": len(jax.local_devices()), "tensor": 1}
