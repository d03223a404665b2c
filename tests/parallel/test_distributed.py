"""jax.distributed start-up from config/env (argument checks with a recorded initialize) and
a real 2-process multi-controller run on CPU (2 hosts x 4 simulated devices)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jaxseg.parallel.distributed import DistributedError, initialize, resolve

TESTS_DIR = Path(__file__).resolve().parents[1]
REPO = TESTS_DIR.parent


class Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, **kwargs):
        self.calls.append(kwargs)


def test_single_process_is_a_no_op():
    rec = Recorder()
    info = initialize(None, env={}, initialize_fn=rec)
    assert (info.index, info.count, info.initialized) == (0, 1, False)
    assert rec.calls == []
    assert initialize({"num_processes": 1}, env={}, initialize_fn=rec).initialized is False


def test_env_fills_what_config_leaves_out():
    env = {
        "JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234",
        "JAX_NUM_PROCESSES": "4",
        "JAX_PROCESS_ID": "2",
        "JAX_LOCAL_DEVICE_IDS": "0,1",
    }
    dc = resolve({"coordinator_address": "10.0.0.9:99"}, env)
    assert dc.coordinator_address == "10.0.0.9:99"  # config wins
    assert (dc.num_processes, dc.process_id, dc.local_device_ids) == (4, 2, (0, 1))
    rec = Recorder()
    assert initialize(None, env, initialize_fn=rec).initialized
    assert rec.calls == [
        dict(
            coordinator_address="10.0.0.1:1234",
            num_processes=4,
            process_id=2,
            local_device_ids=[0, 1],
            initialization_timeout=300,
        )
    ]


def test_auto_lets_jax_detect_the_cluster():
    rec = Recorder()
    initialize({"auto": True, "cluster_detection_method": "slurm"}, env={}, initialize_fn=rec)
    assert rec.calls == [dict(initialization_timeout=300, cluster_detection_method="slurm")]
    rec = Recorder()
    initialize(None, env={"JAXSEG_DISTRIBUTED_AUTO": "1"}, initialize_fn=rec)
    assert rec.calls == [dict(initialization_timeout=300)]


@pytest.mark.parametrize(
    "cfg, env, match",
    [
        ({"num_processes": 2}, {}, "coordinator_address.*JAX_COORDINATOR_ADDRESS"),
        ({"coordinator_address": "h:1", "num_processes": 2}, {}, "process_id.*JAX_PROCESS_ID"),
        ({"coordinator_address": "h:1", "num_processes": 2, "process_id": 2}, {}, "outside"),
        (None, {"JAX_NUM_PROCESSES": "two"}, "JAX_NUM_PROCESSES"),
        ({"coordinater_address": "h:1"}, {}, "unknown fields"),
    ],
)
def test_incomplete_settings_name_the_field(cfg, env, match):
    with pytest.raises(DistributedError, match=match):
        initialize(cfg, env, initialize_fn=Recorder())


def test_two_process_cpu_run_shards_data_and_matches_unsharded():
    """Launched by launch/local.sh (the multi-host contract: JAX_COORDINATOR_ADDRESS /
    JAX_NUM_PROCESSES / JAX_PROCESS_ID), 2 processes x 4 simulated CPU devices."""
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    env["PYTHON"] = sys.executable
    proc = subprocess.run(
        [
            "bash",
            str(REPO / "launch" / "local.sh"),
            "--processes",
            "2",
            "--devices-per-process",
            "4",
            "--",
            sys.executable,
            str(Path(__file__).with_name("multihost_worker.py")),
            str(TESTS_DIR),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    out = proc.stdout + proc.stderr
    decoder = json.JSONDecoder()
    results = [
        decoder.raw_decode(proc.stdout, m.end())[0] for m in re.finditer(r"RESULT ", proc.stdout)
    ]
    assert proc.returncode == 0 and len(results) == 2, out[-3000:]
    results.sort(key=lambda r: r["index"])
    for i, r in enumerate(results):
        assert (r["index"], r["count"], r["initialized"]) == (i, 2, True)
        assert (r["global_devices"], r["local_devices"]) == (8, 4)
        assert r["mesh"] == {"data": 2, "fsdp": 4, "tensor": 1}
        assert r["data_row_processes"] == [[0], [1]]  # each DCN row is one host
        assert r["global_shape"] == [8, 24]
        assert r["round_trip"]
        assert r["logits_max_abs_diff"] <= 1e-5
    for step, whole in enumerate(results[0]["whole"]):  # each host loaded its half of a step
        (o0, p0), (o1, p1) = results[0]["shard"][step], results[1]["shard"][step]
        assert (o0, o1) == (0, 2) and p0 + p1 == whole and set(p0).isdisjoint(p1)
    total = results[0]["local_sum"] + results[1]["local_sum"]
    assert results[0]["global_sum"] == results[1]["global_sum"] == total


@pytest.mark.slow
def test_two_process_experiment_sft_and_grpo_equal_one_process(tmp_path):
    """`Experiment` (demo quick config, nano model) as a 2-host job: each process joins the job
    from the launcher's environment, builds its own mask backend, and trains on a (data 2 x
    fsdp 4) mesh whose data axis spans the processes. In the GRPO step each process rolls out
    and scores only its half of the prompts (on its own devices, with its own backend). One SFT
    step then one GRPO step (rollouts, rewards, KL reference, update) give the params of a
    single plain process, and only process 0 writes the metrics."""
    from jaxseg.commands.train import ensure_data
    from jaxseg.config import load_config

    data = tmp_path / "data"
    ensure_data(load_config("demo:quick", [f"data.root={data}"]), progress=False)
    worker = str(Path(__file__).with_name("multihost_experiment.py"))
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    env["PYTHON"] = sys.executable
    plain = subprocess.run(
        [sys.executable, worker, str(data), str(tmp_path / "plain"), "sft,grpo",
         str(tmp_path / "plain.npz")],
        env=dict(env, JAX_PLATFORMS="cpu"), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert plain.returncode == 0, plain.stderr[-3000:]
    (plain_result,) = [
        json.loads(line.removeprefix("RESULT "))
        for line in plain.stdout.splitlines()
        if line.startswith("RESULT ")
    ]
    launch = [str(REPO / "launch" / "local.sh"), "--processes", "2", "--devices-per-process", "4"]
    multi = subprocess.run(
        ["bash", *launch, "--", sys.executable, worker, str(data), str(tmp_path / "multi"),
         "sft,grpo", str(tmp_path / "multi.npz"), "2x4"],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    decoder = json.JSONDecoder()
    results = [
        decoder.raw_decode(multi.stdout, m.end())[0] for m in re.finditer(r"RESULT ", multi.stdout)
    ]
    assert multi.returncode == 0 and len(results) == 2, (multi.stdout + multi.stderr)[-3000:]
    for i, r in enumerate(sorted(results, key=lambda r: r["index"])):
        assert (r["index"], r["count"]) == (i, 2)
        assert r["mesh"] == {"data": 2, "fsdp": 4, "tensor": 1}
    # each host rolled out its own half of the step's prompts (the plain run: all of them)
    assert plain_result["grpo_openings"] == 2
    assert [r["grpo_openings"] for r in results] == [1, 1]
    want, got = np.load(tmp_path / "plain.npz"), np.load(tmp_path / "multi.npz")
    assert set(want.files) == set(got.files) and len(want.files) > 50
    for name in want.files:
        np.testing.assert_allclose(got[name], want[name], atol=1e-5, rtol=0, err_msg=name)
    for stage in ("sft", "grpo"):  # process 0 alone writes: one line per step
        lines = (tmp_path / "multi" / stage / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(x)["step"] for x in lines] == [0], stage
    want_log = json.loads((tmp_path / "plain" / "grpo" / "metrics.jsonl").read_text())
    got_log = json.loads((tmp_path / "multi" / "grpo" / "metrics.jsonl").read_text())
    assert want_log["adv_nonzero_frac"] > 0 and want_log["grad_norm"] > 1e-3  # a real update
    for key in ("reward/mean", "reward/probe", "adv_std", "tokens", "entropy", "grad_norm"):
        np.testing.assert_allclose(got_log[key], want_log[key], rtol=1e-4, err_msg=key)
