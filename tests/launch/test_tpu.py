"""launch/tpu.py: the v5p-32 dry-run command set, the babysitter's decisions and its loop on a
scripted (fake) gcloud."""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "launch" / "tpu.py"
COMMON = [
    "--name", "seg", "--zone", "us-east5-a", "--accelerator", "v5p-32", "--spot",
    "--config", "qwen_grpo", "--workdir", "gs://bucket/runs/seg", "--set", "rl.group_size=8",
]  # fmt: skip


def _load():
    spec = importlib.util.spec_from_file_location("launch_tpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up while it executes
    spec.loader.exec_module(module)
    return module


tpu = _load()


def _dry_run(*args: str) -> list[list[str]]:
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run", *args],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return [shlex.split(line) for line in out.splitlines() if line and not line.startswith("#")]


def _flag(cmd, name):
    return next(w.split("=", 1)[1] for w in cmd if w.startswith(f"--{name}="))


def test_up_on_v5p32_prints_the_full_command_set():
    cmds = _dry_run("up", *COMMON, "--plan-config", "qwen2_5_vl_3b_grpo")
    plan, create, archive, scp, install, stop, run = cmds
    assert plan[-4:] == ["--config", "qwen2_5_vl_3b_grpo", "--topology", "v5p-32"]
    assert create[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "create", "seg"]
    assert _flag(create, "accelerator-type") == "v5p-32"  # 32 TensorCores = 16 chips, 4 hosts
    assert _flag(create, "version") == "v2-alpha-tpuv5"
    assert "--spot" in create and _flag(create, "zone") == "us-east5-a"
    assert archive[:3] == ["git", "-C", str(REPO)] and "HEAD" in archive
    assert scp[4] == "scp" and "--worker=all" in scp
    for cmd in (install, stop, run):  # every host runs the same program
        assert cmd[4:6] == ["ssh", "seg"] and "--worker=all" in cmd
    pyproject = (REPO / "pyproject.toml").read_text()
    jax_pin = re.search(r'"jax==([\d.]+)"', pyproject).group(1)
    assert f"jax[tpu]=={jax_pin}" in _flag(install, "command")
    job = _flag(run, "command")
    assert "JAXSEG_DISTRIBUTED_AUTO=1" in job and "nohup setsid" in job
    assert (
        ".venv/bin/jaxseg train --config qwen_grpo --workdir gs://bucket/runs/seg "
        "--set rl.group_size=8 && touch ~/jaxseg_run.done"
    ) in job


def test_babysit_dry_run_shows_polling_and_recovery():
    cmds = _dry_run("babysit", *COMMON)
    verbs = [c[4] if c[0] == "gcloud" else c[0] for c in cmds]
    assert verbs[:3] == ["describe", "ssh", "ssh"]  # state, done marker, process alive
    assert verbs[3:5] == ["delete", "create"]  # preempted: re-create...
    assert verbs.count("ssh") >= 7  # ...set up and run again, or just run again


@pytest.mark.parametrize(
    "state, done, alive, action",
    [
        ("READY", False, True, "wait"),
        ("READY", False, False, "restart"),
        ("READY", True, False, "finished"),
        ("PREEMPTED", False, False, "recreate"),
        ("NOT_FOUND", False, False, "recreate"),
        ("CREATING", False, False, "wait"),
    ],
)
def test_decide(state, done, alive, action):
    assert tpu.decide(state, done, alive) == action


class FakeGcloud:
    """Answers describe / done / alive probes from a script of observations."""

    def __init__(self, observations):
        self.observations = list(observations)
        self.current = None
        self.dry_run = False
        self.log: list[list[str]] = []

    def __call__(self, cmd, check=True):
        self.log.append(cmd)
        if cmd[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "describe"]:
            self.current = self.observations.pop(0)
            rc = 0 if self.current[0] != "NOT_FOUND" else 1
            return subprocess.CompletedProcess(cmd, rc, stdout=self.current[0] + "\n")
        command = next((w for w in cmd if w.startswith("--command=")), "")
        if "test -f ~/jaxseg_run.done" in command:
            return subprocess.CompletedProcess(cmd, 0 if self.current[1] else 1)
        if "kill -0" in command:
            return subprocess.CompletedProcess(cmd, 0 if self.current[2] else 1)
        return subprocess.CompletedProcess(cmd, 0)


def test_babysit_recreates_after_preemption_and_stops_when_done(monkeypatch):
    monkeypatch.setattr(tpu.time, "sleep", lambda s: None)
    fake = FakeGcloud(
        [("READY", False, True), ("PREEMPTED", False, False), ("READY", False, False),
         ("READY", True, False)]
    )  # fmt: skip
    args = tpu.parse_args(["babysit", *COMMON, "--interval", "0"])
    s = tpu.Slice(args.name, args.zone, args.accelerator, None, True)
    tpu.action_babysit(fake, s, args)
    verbs = [c[4] if c[0] == "gcloud" else c[0] for c in fake.log]
    # after PREEMPTED: delete, create, archive, scp, install, stop, run; later a dead run
    # (READY, not alive) is started again; then done.
    assert verbs.count("create") == 1 and verbs.count("delete") == 1
    runs = [c for c in fake.log if any("nohup setsid" in w for w in c)]
    assert len(runs) == 2
    assert fake.observations == []


def test_babysit_gives_up_after_max_restarts(monkeypatch):
    monkeypatch.setattr(tpu.time, "sleep", lambda s: None)
    fake = FakeGcloud([("PREEMPTED", False, False)] * 3)
    args = tpu.parse_args(["babysit", *COMMON, "--interval", "0", "--max-restarts", "2"])
    s = tpu.Slice(args.name, args.zone, args.accelerator, None, True)
    with pytest.raises(SystemExit, match="gave up after 2 restarts"):
        tpu.action_babysit(fake, s, args)


def test_bad_accelerator_and_missing_run_args():
    bad = subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run", "create", "--name", "x", "--zone", "z",
         "--accelerator", "v9-8"], capture_output=True, text=True,
    )  # fmt: skip
    assert bad.returncode != 0 and "unknown topology" in bad.stderr
    gpu = subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run", "create", "--name", "x", "--zone", "z",
         "--accelerator", "8xH100"], capture_output=True, text=True,
    )  # fmt: skip
    assert gpu.returncode != 0 and "not a TPU slice" in gpu.stderr
    with pytest.raises(SystemExit, match="--config and --workdir"):
        tpu.main(["--dry-run", "run", "--name", "x", "--zone", "z", "--accelerator", "v5p-8"])
