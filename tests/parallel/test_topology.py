"""Slice names -> chips, hosts and per-chip figures."""

import pytest

from jaxseg.parallel.topology import TopologyError, parse_topology


@pytest.mark.parametrize(
    "name, devices, hosts, accelerator_type",
    [
        ("v5p-8", 4, 1, "v5p-8"),
        ("v5p-32", 16, 4, "v5p-32"),  # 32 TensorCores = 16 chips, 4 chips per host
        ("v4-16", 8, 2, "v4-16"),
        ("v5litepod-8", 8, 1, "v5litepod-8"),
        ("v5e-16", 16, 4, "v5litepod-16"),
        ("v6e-8", 8, 1, "v6e-8"),
        ("v6e-64", 64, 16, "v6e-64"),
        ("8xH100", 8, 1, None),
        ("16xH200", 16, 2, None),
    ],
)
def test_parse(name, devices, hosts, accelerator_type):
    topo = parse_topology(name)
    assert (topo.devices, topo.hosts, topo.accelerator_type) == (devices, hosts, accelerator_type)


def test_v5p_figures_and_runtime():
    chip = parse_topology("v5p-32").chip
    assert chip.hbm_bytes == 95e9 and chip.peak_bf16_flops == 459e12
    assert chip.runtime_version == "v2-alpha-tpuv5"


@pytest.mark.parametrize("name", ["v5p-31", "v7-8", "8xB200", "tpu", "0xH100"])
def test_unknown_or_malformed(name):
    with pytest.raises(TopologyError):
        parse_topology(name)
