"""launch/slurm.sbatch: dry-run command, the real path against a fake srun, and that jax's own
SLURM detection (what JAXSEG_DISTRIBUTED_AUTO=1 relies on) reads the allocation."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "launch" / "slurm.sbatch"
ARGS = ["--config", "qwen_grpo", "--workdir", "/shared/runs/seg", "--set", "mesh.dcn=(-1,1,1)"]


def _run(args, env_extra, path_prefix=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env.update(env_extra)
    if path_prefix:
        env["PATH"] = f"{path_prefix}:{env['PATH']}"
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True)


def test_sbatch_header_asks_for_one_task_per_node_and_requeue():
    header = [ln for ln in SCRIPT.read_text().splitlines() if ln.startswith("#SBATCH")]
    assert "#SBATCH --ntasks-per-node=1" in header
    assert "#SBATCH --requeue" in header
    assert any(ln.startswith("#SBATCH --signal=B:USR1@") for ln in header)


def test_dry_run_prints_srun_over_the_allocation():
    proc = _run(["--dry-run", *ARGS], {"SLURM_JOB_NUM_NODES": "4", "SLURM_SUBMIT_DIR": "/r"})
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if not ln.startswith("#")]
    assert lines[0] == "cd /r"
    srun = shlex.split(lines[1])
    assert srun[:4] == ["srun", "--nodes=4", "--ntasks-per-node=1", "--kill-on-bad-exit=1"]
    assert srun[4:6] == ["env", "JAXSEG_DISTRIBUTED_AUTO=1"]
    assert srun[6:] == ["/r/.venv/bin/jaxseg", "train", *ARGS]


def test_plan_gate_sizes_the_topology_from_the_allocation():
    """--plan-config runs `jaxseg plan` for nodes x 8 GPUs first (it exits 1 when the config
    does not fit, and `set -e` stops the job before srun)."""
    args = ["--dry-run", "--plan-config", "qwen2_5_vl_3b_grpo:remat=full", "--gpu", "H200", *ARGS]
    proc = _run(args, {"SLURM_JOB_NUM_NODES": "2", "SLURM_SUBMIT_DIR": "/r"})
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if not ln.startswith("#")]
    assert shlex.split(lines[1]) == [
        "/r/.venv/bin/jaxseg", "plan", "--config", "qwen2_5_vl_3b_grpo:remat=full",
        "--topology", "16xH200",
    ]  # fmt: skip
    assert lines[2].startswith("srun --nodes=2")


def test_real_path_runs_srun(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "srun").write_text('#!/usr/bin/env bash\necho "SRUN $*" > "$SRUN_LOG"\n')
    (fake / "srun").chmod(0o755)
    log = tmp_path / "srun.log"
    env = {"SLURM_JOB_NUM_NODES": "2", "SLURM_JOB_ID": "7", "SRUN_LOG": str(log)}
    proc = _run(["--repo", str(tmp_path), *ARGS], env, path_prefix=str(fake))
    assert proc.returncode == 0, proc.stderr
    called = log.read_text()
    assert called.startswith("SRUN --nodes=2 --ntasks-per-node=1")
    assert f"{tmp_path}/.venv/bin/jaxseg train --config qwen_grpo" in called


def test_missing_arguments_and_no_allocation():
    assert _run(["--config", "x"], {}).returncode == 2
    outside = _run(ARGS, {})
    assert outside.returncode == 2 and "not inside a SLURM allocation" in outside.stderr


def test_jax_reads_the_slurm_allocation():
    # What jax.distributed.initialize() sees in each srun task (private API, pinned jax 0.10.2).
    code = (
        "from jax._src.clusters import SlurmCluster as C;"
        "print(C.is_env_present(), C.get_coordinator_address(None, None).split(':')[0],"
        " C.get_process_count(), C.get_process_id())"
    )
    env = dict(os.environ, SLURM_JOB_ID="12", SLURM_STEP_NODELIST="gpu[003-004]",
               SLURM_PROCID="1", SLURM_NTASKS="2", SLURM_LOCALID="0")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.split() == ["True", "gpu003", "2", "1"], out.stderr
