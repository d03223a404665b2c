"""One process of the 2-process resume run in test_multihost_feed.py (not collected by pytest).

    multihost_resume.py DATA_ROOT WORKDIR OUT.npz STOP_AT [MESH]

The `sft` stage of the demo's quick config: 8 examples, 4 a step, so an epoch is 2 steps and
the 4 steps are 2 epochs. Every process records what its grain feed gave it at each step
(step, offset, positions). STOP_AT >= 0: the run stops with an error inside step STOP_AT
(the checkpoints of the steps before it are written); -1: it runs to the end (resuming what
is in WORKDIR) and process 0 writes the trained params to OUT.npz. With MESH (`2x4`: data
over the 2 processes, fsdp over each one's 4 devices) the run is multi-host. Each process
prints one line: RESULT {"index", "count", "read": [[step, offset, positions], ...],
"stopped": bool}."""

from __future__ import annotations

import json
import sys

import jax
import numpy as np
from jax.experimental import multihost_utils

jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.config.update("jax_default_matmul_precision", "highest")

from flax import nnx  # noqa: E402
from ml_collections import ConfigDict  # noqa: E402

from jaxseg.config import load_config  # noqa: E402
from jaxseg.train import pieces  # noqa: E402
from jaxseg.train.trainer import Experiment  # noqa: E402

OVERRIDES = [
    "sft.steps=4",
    "sft.num_examples=8",
    "sft.batch_size=4",
    "sft.micro_batch=2",
    "sft.learning_rate=1e-3",
    "sft.checkpoint_every=1",
    "sft.eval_every=0",
]


class Stopped(RuntimeError):
    """The simulated interruption."""


def main() -> int:
    data_root, workdir, out_file, stop_at = sys.argv[1:5]
    config = load_config("demo:quick", [f"data.root={data_root}", *OVERRIDES])
    if len(sys.argv) > 5:
        data, fsdp = (int(x) for x in sys.argv[5].split("x"))
        config.mesh = ConfigDict(dict(ici=(1, fsdp, 1), dcn=(data, 1, 1), granule="process"))
    read = []
    step = pieces.SupervisedPiece.step

    def recording_step(self, data, optimizer):
        read.append([data.step, data.offset, data.positions])
        if data.step == int(stop_at):
            raise Stopped(f"stopped in step {data.step}")
        return step(self, data, optimizer)

    pieces.SupervisedPiece.step = recording_step
    exp = Experiment(config, workdir, progress=False)
    stopped = False
    try:
        exp.sft()
    except Stopped:
        stopped = True
    if not stopped:
        state = nnx.to_pure_dict(nnx.state(exp.model, nnx.Param))
        params = multihost_utils.process_allgather(state, tiled=True)  # global values
        if exp.process.index == 0:
            flat = jax.tree_util.tree_leaves_with_path(params)
            np.savez(out_file, **{jax.tree_util.keystr(p): np.asarray(v) for p, v in flat})
    out = {
        "index": exp.process.index,
        "count": exp.process.count,
        "read": read,
        "stopped": stopped,
    }
    sys.stdout.write("RESULT " + json.dumps(out) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
