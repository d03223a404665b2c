"""The trainer on a mesh (jaxseg.parallel.placement through jaxseg.train.trainer.Experiment):
`config.mesh` set -> params, optimizer state and batches on their rule shardings; the trained
params equal the single-device run's; a checkpoint written on one mesh resumes on another.

Experiment runs use the demo config's `quick` knob (nano model, synthetic data) with a few
overrides; the SFT tests stay in the default tier, SFT + GRPO end to end is `slow`."""

from __future__ import annotations

import json
import shutil

import jax
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P
from ml_collections import ConfigDict

from jaxseg.parallel import mesh_from_shape
from jaxseg.parallel.placement import place, place_batch, run_mesh
from jaxseg.parallel.rules import abstract_on_mesh, state_shardings
from jaxseg.train.batch import make_policy_batch

from .conftest import tiny_config

# SFT: 8 oracle traces, one step of 8 rows in 2 micro-batches of 4 (rows divide data x fsdp
# on both meshes below). lr 1e-4: at the demo's 1e-3, AdamW's first step turns fp32
# reduction-order noise on near-zero gradients into ~1e-5 differences (test_grpo_mesh.py).
SFT = [
    "sft.steps=1",
    "sft.num_examples=8",
    "sft.batch_size=8",
    "sft.micro_batch=4",
    "sft.learning_rate=1e-4",
    "sft.checkpoint_every=1",
]
GRPO = [
    "grpo.steps=1",
    "grpo.prompts_per_step=2",
    "grpo.group_size=2",
    "grpo.micro_batch=4",
    "grpo.max_new_tokens=24",
]


def _config(data_root, mesh_shape=None, extra=()):
    from jaxseg.config import load_config

    config = load_config("demo:quick", [f"data.root={data_root}", *SFT, *GRPO, *extra])
    if mesh_shape is not None:
        config.mesh = ConfigDict(dict(axes=("data", "fsdp", "tensor"), ici=mesh_shape))
    return config


def _experiment(config, workdir, processor_from=None, allow_config_change=False):
    """An Experiment; `processor_from`: a run whose processor files to reuse (building the
    tokenizer again costs seconds and gives the same files)."""
    from jaxseg.train.trainer import Experiment

    source = None if processor_from is None else processor_from / "processor"
    if source is not None and source.is_dir() and not (workdir / "processor").exists():
        shutil.copytree(source, workdir / "processor")
    return Experiment(config, workdir, progress=False, allow_config_change=allow_config_change)


def _params(model) -> dict:
    return {p: np.asarray(v[...]) for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}


def _losses(workdir, stage) -> dict[int, float]:
    rows = (workdir / stage / "metrics.jsonl").read_text().splitlines()
    return {json.loads(r)["step"]: json.loads(r)["loss"] for r in rows}


def _assert_on_rules(model, mesh):
    want = dict(nnx.to_flat_state(state_shardings(model, mesh, nnx.Param)))
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        assert var[...].sharding.is_equivalent_to(want[path], var.ndim), path


def _assert_close(got: dict, want: dict):
    assert set(got) == set(want)
    for path, value in want.items():
        np.testing.assert_allclose(got[path], value, atol=1e-5, rtol=0, err_msg=str(path))


@pytest.fixture(scope="module")
def sft_runs(tmp_path_factory, no_replica_parallel_save):
    """One SFT step without a mesh and on (2, 2, 2): (root, plain, sharded, params before the
    step, plain params after it)."""
    from jaxseg.commands.train import ensure_data

    root = tmp_path_factory.mktemp("mesh_runs")
    data = root / "data"
    ensure_data(_config(data), progress=False)
    plain = _experiment(_config(data), root / "plain")
    initial = _params(plain.model)
    plain.sft()
    after_one = _params(plain.model)
    sharded = _experiment(_config(data, (2, 2, 2)), root / "m222", processor_from=root / "plain")
    sharded.sft()
    return root, plain, sharded, initial, after_one


def test_run_mesh_from_config_block():
    assert run_mesh(ConfigDict(dict(seed=0))) is None
    mesh = run_mesh(ConfigDict(dict(mesh=dict(ici=(2, 2, 2)))))
    assert dict(mesh.shape) == {"data": 2, "fsdp": 2, "tensor": 2}


def test_place_batch_puts_rows_on_the_batch_axes(image_batch, tiny_model):
    mesh = mesh_from_shape((2, 2, 2))
    keep = image_batch["attention_mask"].astype(bool)
    patches = image_batch["pixel_values"].reshape(8, 24, -1)
    examples = [
        {
            "input_ids": image_batch["input_ids"][b][keep[b]],
            "policy_mask": image_batch["completion_mask"][b][keep[b]],
            "pixel_values": patches[b],
            "image_grid_thw": image_batch["image_grid_thw"][b : b + 1],
        }
        for b in range(8)
    ]
    batch = make_policy_batch(examples, config=tiny_config(), length_buckets=(32,))
    placed = place_batch(batch, mesh)
    assert place_batch(batch, None) is batch
    rows = ("data", "fsdp")
    assert placed.input_ids.sharding.spec == P(rows, None)
    assert placed.loss_mask.sharding.spec == P(rows, None)
    assert placed.advantages.sharding.spec == P(rows)
    assert placed.position_ids.sharding.spec == P(None, rows, None)
    assert placed.pixel_values.sharding.spec == P(rows, None)
    np.testing.assert_array_equal(np.asarray(placed.input_ids), batch.input_ids)
    model = place(nnx.clone(tiny_model), mesh)
    _assert_on_rules(model, mesh)


def test_experiment_sft_on_mesh_equals_unsharded(sft_runs):
    root, plain, sharded, initial, after_one = sft_runs
    assert plain.mesh is None and dict(sharded.mesh.shape) == {"data": 2, "fsdp": 2, "tensor": 2}
    _assert_on_rules(sharded.model, sharded.mesh)
    gate = sharded.model.language_model.layers[0].mlp.gate_proj.kernel[...]
    assert gate.sharding.spec == P("fsdp", "tensor")
    _assert_close(_params(sharded.model), after_one)
    assert _losses(root / "m222", "sft")[0] == pytest.approx(_losses(root / "plain", "sft")[0])
    moved = [p for p, v in after_one.items() if np.abs(v - initial[p]).max() > 5e-5]
    assert len(moved) > len(initial) // 2  # the step did train (lr 1e-4 moves a weight ~1e-4)


def _assert_on_abstract_targets(model, mesh):
    """Every parameter sits on `rules.abstract_on_mesh`'s sharding (the restore target)."""
    want = abstract_on_mesh(model, mesh, nnx.Param)
    got = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    for (path, struct), value in zip(
        jax.tree_util.tree_leaves_with_path(want), jax.tree.leaves(got), strict=True
    ):
        assert value.sharding.is_equivalent_to(struct.sharding, value.ndim), path


def test_checkpoint_from_one_mesh_loads_on_another(sft_runs):
    """The (2,2,2) run's SFT checkpoint read by an Experiment on (1,2,4) (`load_stage`, the
    path GRPO, eval and export take): same values, this mesh's shardings."""
    root, _, sharded = sft_runs[:3]
    shutil.copytree(root / "m222", root / "m124_load")
    other = _experiment(_config(root / "data", (1, 2, 4)), root / "m124_load")
    assert dict(other.mesh.shape) == {"data": 1, "fsdp": 2, "tensor": 4}
    assert other.load_stage("sft") == 0
    _assert_on_abstract_targets(other.model, other.mesh)
    gate = other.model.language_model.layers[0].mlp.gate_proj.kernel[...]
    assert gate.sharding.shard_shape(gate.shape) == (64 // 2, 192 // 4)
    np.testing.assert_array_equal(
        np.asarray(gate),
        np.asarray(sharded.model.language_model.layers[0].mlp.gate_proj.kernel[...]),
    )
    _assert_close(_params(other.model), _params(sharded.model))


@pytest.mark.slow
def test_checkpoint_from_one_mesh_resumes_on_another(sft_runs):
    """Params *and* AdamW state: the (2,2,2) run's step-0 checkpoint resumes on (1,2,4) for one
    more step; the plain run resumes the same way; both continuations agree."""
    root, plain = sft_runs[0], sft_runs[1]
    shutil.copytree(root / "m222", root / "m124")
    plain.config.sft.steps = 2  # the plain run resumes from its own step-0 checkpoint
    plain.sft()
    # one more step than the saved run had: a config change the run must be told to accept
    moved = _experiment(
        _config(root / "data", (1, 2, 4), ["sft.steps=2"]), root / "m124", allow_config_change=True
    )
    moved.sft()
    assert sorted(_losses(root / "m124", "sft")) == [0, 1]  # step 0 came from the checkpoint
    _assert_on_abstract_targets(moved.model, moved.mesh)
    _assert_close(_params(moved.model), _params(plain.model))


@pytest.mark.slow
def test_experiment_sft_and_grpo_on_mesh_equal_unsharded(tmp_path, no_replica_parallel_save):
    """Two SFT steps then one GRPO step (rollouts by the sampler on the mesh, rewards, KL
    reference, update) on (2,2,2) equal the single-device run."""
    from jaxseg.commands.train import ensure_data

    data = tmp_path / "data"
    extra = ["sft.steps=2"]
    ensure_data(_config(data), progress=False)
    runs = {}
    for name, shape in (("plain", None), ("m222", (2, 2, 2))):
        exp = _experiment(_config(data, shape, extra), tmp_path / name, tmp_path / "plain")
        exp.sft()
        exp.grpo()
        runs[name] = exp
    _assert_on_rules(runs["m222"].model, runs["m222"].mesh)
    _assert_close(_params(runs["m222"].model), _params(runs["plain"].model))
    for stage in ("sft", "grpo"):
        a, b = _losses(tmp_path / "plain", stage), _losses(tmp_path / "m222", stage)
        assert a.keys() == b.keys() and all(b[k] == pytest.approx(a[k], abs=1e-5) for k in a)
