"""One process of the 2-process Experiment run in test_distributed.py (not collected by pytest).

    multihost_experiment.py DATA_ROOT WORKDIR STAGES OUT.npz [MESH]

Runs `Experiment` stages (comma-separated: sft, grpo) on the demo's quick config; with MESH
(`2x4`: data over the 2 processes, fsdp over each one's 4 devices) the run is multi-host,
without it one plain process. Process 0 writes the trained params (global values) to OUT.npz;
every process prints one JSON line: its index, the process count, the mesh and how many videos
it opened in GRPO (its rollout prompts; the stages must end with grpo)."""

from __future__ import annotations

import json
import sys
import zlib

import jax
import numpy as np
from jax.experimental import multihost_utils

jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.config.update("jax_default_matmul_precision", "highest")

from flax import nnx  # noqa: E402
from ml_collections import ConfigDict  # noqa: E402

from jaxseg.config import load_config  # noqa: E402
from jaxseg.train.trainer import Experiment  # noqa: E402

OVERRIDES = [
    "sft.steps=1",
    "sft.num_examples=8",
    "sft.batch_size=8",
    "sft.micro_batch=4",
    "sft.learning_rate=1e-4",
    "grpo.steps=1",
    "grpo.prompts_per_step=2",
    "grpo.group_size=2",
    "grpo.micro_batch=4",
    "grpo.max_new_tokens=16",
    "sft.eval_every=0",
    "grpo.eval_every=0",
]


class ProbedProtocol:
    """The run's protocol, counting the episodes it opens (this process's rollout prompts) and
    adding to each episode's reward a term read off its sampled turns, so that the untrained
    nano policy (no parsable answer, reward 0 everywhere) still gets non-zero advantages and the
    GRPO update depends on exactly which tokens each host sampled."""

    def __init__(self, inner):
        self.inner = inner
        self.openings = 0

    def opening(self, *args, **kwargs):
        self.openings += 1
        return self.inner.opening(*args, **kwargs)

    def episode(self, *args, **kwargs):
        return ProbedEpisode(self.inner.episode(*args, **kwargs))

    def __getattr__(self, name):
        return getattr(self.inner, name)


class ProbedEpisode:
    def __init__(self, inner):
        self.inner = inner

    def score(self, results):
        reward = dict(self.inner.score(results))
        text = "\x00".join(t.response for t in self.inner.turns)  # the sampled text only
        reward["probe"] = (zlib.crc32(text.encode()) % 97) / 97
        reward["total"] = reward["total"] + reward["probe"]
        return reward

    def __getattr__(self, name):
        return getattr(self.inner, name)


def _name(path) -> str:
    return jax.tree_util.keystr(path, simple=True, separator="/")


def main() -> int:
    data_root, workdir, stages, out_file = sys.argv[1:5]
    config = load_config("demo:quick", [f"data.root={data_root}", *OVERRIDES])
    if len(sys.argv) > 5:
        data, fsdp = (int(x) for x in sys.argv[5].split("x"))
        config.mesh = ConfigDict(dict(ici=(1, fsdp, 1), dcn=(data, 1, 1), granule="process"))
    exp = Experiment(config, workdir, progress=False)
    for stage in stages.split(","):
        if stage == "grpo":
            exp.protocol = protocol = ProbedProtocol(exp.protocol)
        getattr(exp, stage)()
    state = nnx.to_pure_dict(nnx.state(exp.model, nnx.Param))
    params = multihost_utils.process_allgather(state, tiled=True)  # global values, every host
    if exp.process.index == 0:
        flat = jax.tree_util.tree_leaves_with_path(params)
        np.savez(out_file, **{_name(p): np.asarray(v) for p, v in flat})
    out = {
        "index": exp.process.index,
        "count": exp.process.count,
        "mesh": None if exp.mesh is None else dict(exp.mesh.shape),
        "grpo_openings": protocol.openings,
    }
    sys.stdout.write("RESULT " + json.dumps(out) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
