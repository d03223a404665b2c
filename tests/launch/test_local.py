"""launch/local.sh: per-process environment in the dry run, exit status, failure propagation.
(A real 2-process JAX job through it: tests/parallel/test_distributed.py.)"""

from __future__ import annotations

import shlex
import subprocess
import time
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "launch" / "local.sh"


def _run(*args):
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True)


def test_dry_run_one_line_per_process_with_the_jax_contract():
    out = _run("--dry-run", "--processes", "3", "--devices-per-process", "2", "--port", "4321",
               "--config", "demo", "--workdir", "runs/x", "--set", "grpo.kl_coef=0.0")  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = [shlex.split(ln) for ln in out.stdout.splitlines()]
    assert len(lines) == 3
    for i, words in enumerate(lines):
        assert words[0] == "env"
        assert words[1:4] == [
            "JAX_COORDINATOR_ADDRESS=127.0.0.1:4321", "JAX_NUM_PROCESSES=3", f"JAX_PROCESS_ID={i}",
        ]  # fmt: skip
        assert "XLA_FLAGS=--xla_force_host_platform_device_count=2" in words
        assert words[-9:] == ["-m", "jaxseg.cli", "train", "--config", "demo", "--workdir",
                              "runs/x", "--set", "grpo.kl_coef=0.0"]  # fmt: skip


def test_single_process_sets_no_distributed_env():
    out = _run("--dry-run", "--config", "demo", "--workdir", "runs/x")
    assert out.stdout.split()[:2] == ["env", "python"]


def test_a_failing_process_stops_the_others_and_sets_the_status():
    start = time.monotonic()
    out = _run("--processes", "2", "--",
               "bash", "-c", 'if [ "$JAX_PROCESS_ID" = 1 ]; then exit 3; fi; sleep 60')  # fmt: skip
    assert out.returncode == 3
    assert "stopping the others" in out.stderr
    assert time.monotonic() - start < 30


def test_bad_arguments():
    assert _run("--processes", "0", "--", "true").returncode == 2
    assert _run("--config", "demo").returncode == 2  # no workdir, no command
