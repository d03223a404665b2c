"""Accelerator slices by name: 'v5p-32', 'v5litepod-16', 'v6e-8', 'v4-16', '8xH100', '16xH200'.

Per-chip figures are the vendors' published ones (Cloud TPU system-architecture pages; NVIDIA
H100/H200 SXM and A100 80GB data sheets, dense bf16, no sparsity). TPU names count TensorCores
for v4/v5p (2 per chip, one JAX device per chip: megacore) and chips for v5e/v6e. Multi-host
TPU slices have 4 chips per host (a single-host v5e/v6e slice has up to 8); GPU nodes have 8.
"""

from __future__ import annotations

import dataclasses
import math
import re


@dataclasses.dataclass(frozen=True)
class Chip:
    name: str
    hbm_bytes: float  # per chip (= per JAX device)
    peak_bf16_flops: float  # dense, per chip
    hbm_bytes_per_s: float
    link_bytes_per_s: float  # ICI / NVLink per chip, one direction
    cores_per_chip_in_name: int  # TPU: how the slice name counts (v4/v5p TensorCores)
    runtime_version: str | None  # TPU VM software version for JAX


CHIPS = {
    # cloud.google.com/tpu/docs/v5p: 459 TFLOPs, 95 GB HBM2e at 2765 GB/s, ICI 4800 Gbps
    "v5p": Chip("TPU v5p", 95e9, 459e12, 2765e9, 600e9, 2, "v2-alpha-tpuv5"),
    # /tpu/docs/v5e: 197 TFLOPs, 16 GB at 819 GB/s, ICI 1600 Gbps
    "v5litepod": Chip("TPU v5e", 16e9, 197e12, 819e9, 200e9, 1, "v2-alpha-tpuv5-lite"),
    # /tpu/docs/v6e: 918 TFLOPs, 32 GB at 1640 GB/s, ICI 3584 Gbps
    "v6e": Chip("TPU v6e", 32e9, 918e12, 1640e9, 448e9, 1, "v2-alpha-tpuv6e"),
    # /tpu/docs/v4: 275 TFLOPs, 32 GiB at 1200 GB/s, ICI 2400 Gbps
    "v4": Chip("TPU v4", 32 * 2**30, 275e12, 1200e9, 300e9, 2, "tpu-ubuntu2204-base"),
    # NVIDIA SXM: dense bf16; NVLink 900 GB/s bidirectional -> 450 GB/s per direction
    "H100": Chip("NVIDIA H100 SXM 80GB", 80e9, 989e12, 3350e9, 450e9, 1, None),
    "H200": Chip("NVIDIA H200 SXM 141GB", 141e9, 989e12, 4800e9, 450e9, 1, None),
    "A100": Chip("NVIDIA A100 SXM 80GB", 80e9, 312e12, 2039e9, 300e9, 1, None),
}
TPU_ALIASES = {"v5e": "v5litepod"}
GPUS_PER_NODE = 8


class TopologyError(ValueError):
    """An accelerator name this table does not know."""


@dataclasses.dataclass(frozen=True)
class Topology:
    name: str
    chip: Chip
    kind: str  # 'tpu' | 'gpu'
    devices: int  # JAX devices = chips
    hosts: int
    accelerator_type: str | None  # gcloud --accelerator-type for TPUs

    @property
    def devices_per_host(self) -> int:
        return self.devices // self.hosts


def parse_topology(name: str) -> Topology:
    """'v5p-32' -> 16 chips on 4 hosts; '8xH100' -> 8 GPUs on 1 node; '16xH100' -> 2 nodes."""
    text = name.strip()
    m = re.fullmatch(r"(\d+)\s*[xX]\s*(H100|H200|A100)", text, flags=re.IGNORECASE)
    if m:
        n, gpu = int(m.group(1)), m.group(2).upper()
        if n < 1:
            raise TopologyError(f"topology {name!r}: need at least one GPU")
        return Topology(text, CHIPS[gpu], "gpu", n, math.ceil(n / GPUS_PER_NODE), None)
    m = re.fullmatch(r"(v5p|v5litepod|v5e|v6e|v4)-(\d+)", text)
    if not m:
        known = "v5p-N, v5litepod-N (v5e-N), v6e-N, v4-N, NxH100, NxH200, NxA100"
        raise TopologyError(f"unknown topology {name!r}; known forms: {known}")
    family = TPU_ALIASES.get(m.group(1), m.group(1))
    count = int(m.group(2))
    chip = CHIPS[family]
    if count % chip.cores_per_chip_in_name:
        raise TopologyError(f"topology {name!r}: {family} names count TensorCores (even numbers)")
    chips = count // chip.cores_per_chip_in_name
    single_host_max = 8 if family in ("v5litepod", "v6e") else 4
    hosts = 1 if chips <= single_host_max else math.ceil(chips / 4)
    return Topology(text, chip, "tpu", chips, hosts, f"{family}-{count}")
