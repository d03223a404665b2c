"""One process of the 2-process CPU run in test_distributed.py (not collected by pytest).

Started with JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID and 4 simulated CPU
devices per process; prints one JSON line with what it observed."""

from __future__ import annotations

import json
import sys

import jax

jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.config.update("jax_default_matmul_precision", "highest")

from jaxseg.parallel.distributed import initialize  # noqa: E402

info = initialize()

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from jaxseg.data.pipeline import ShuffledSteps, step_feed  # noqa: E402
from jaxseg.parallel import MeshConfig, create_mesh  # noqa: E402
from jaxseg.parallel.data import to_global, to_host_local  # noqa: E402
from jaxseg.parallel.rules import state_shardings  # noqa: E402


def main() -> int:
    out: dict = {"index": info.index, "count": info.count, "initialized": info.initialized}
    out["global_devices"] = len(jax.devices())
    out["local_devices"] = len(jax.local_devices())
    # 2 hosts = 2 DCN granules; each host's 4 devices form the ICI block.
    mesh = create_mesh(MeshConfig(ici=(1, 4, 1), dcn=(2, 1, 1), granule="process"))
    out["mesh"] = dict(mesh.shape)
    out["data_row_processes"] = [
        sorted({d.process_index for d in row.ravel()}) for row in mesh.devices
    ]

    # A step feed of 10 records, 4 a step: each host loads its half of every step.
    feed = iter(step_feed(ShuffledSteps(10, 4, seed=0), lambda _, idx: idx, steps=2))
    out["shard"] = [[d.offset, d.positions] for d in feed]
    out["whole"] = [ShuffledSteps(10, 4, seed=0).map(s)[1] for s in range(2)]

    # Host-local rows -> global batch [8, 24] -> a jitted reduction every host agrees on.
    rng = np.random.default_rng(info.index)
    local_ids = rng.integers(1, 280, (4, 24)).astype(np.int32)
    batch = to_global({"input_ids": local_ids}, mesh)
    ids = batch["input_ids"]
    out["global_shape"] = list(ids.shape)
    total = jax.jit(lambda x: x.astype(jnp.float32).sum())(ids)
    out["global_sum"] = float(total)
    out["local_sum"] = float(local_ids.sum())
    back = to_host_local(batch, mesh)["input_ids"]
    out["round_trip"] = bool(np.array_equal(back, local_ids))

    # The tiny model, sharded over both hosts (fsdp 4 x data 2), vs this host's own
    # unsharded run on the global batch (gathered, 8 rows).
    sys.path.insert(0, sys.argv[1])
    from parallel.conftest import build_model  # tests/ on sys.path

    model = build_model(0)
    everything = np.asarray(jax.experimental.multihost_utils.process_allgather(ids, tiled=True))
    local_model = nnx.merge(*nnx.split(model))
    ref = np.asarray(jax.jit(lambda m, x: m(x))(local_model, jnp.asarray(everything)))
    graphdef, state = nnx.split(model)
    sharded = nnx.merge(graphdef, jax.device_put(state, state_shardings(model, mesh)))
    logits = jax.jit(lambda m, x: m(x))(sharded, ids)
    gathered = np.asarray(jax.experimental.multihost_utils.process_allgather(logits, tiled=True))
    out["logits_max_abs_diff"] = float(np.abs(gathered - ref).max())
    sys.stdout.write("RESULT " + json.dumps(out) + "\n")  # one write: processes share stdout
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
