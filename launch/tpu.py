#!/usr/bin/env python
"""Cloud TPU VM slices for jaxseg: create, set up every worker, run, babysit, delete.

    python launch/tpu.py up       --name seg --zone us-east5-a --accelerator v5p-32 \\
        --config qwen_grpo --workdir /mnt/bucket/runs/seg --spot
    python launch/tpu.py babysit  --name seg --zone us-east5-a --accelerator v5p-32 \\
        --config qwen_grpo --workdir /mnt/bucket/runs/seg --spot
    python launch/tpu.py --dry-run up ...          # print every command, run nothing

Actions: create (the slice), setup (copy this checkout to every worker, install a Python 3.11
venv with jax[tpu]), run (start `jaxseg train` on all workers at once, detached), status,
babysit (poll; when the slice is preempted or gone: delete, re-create, set up and run again;
when the run died: start it again; stop when the run wrote its done marker), delete, up
(create + setup + run).

Every worker runs the same command (multi-controller JAX): JAXSEG_DISTRIBUTED_AUTO=1 makes
jaxseg.parallel.distributed.initialize (called by Experiment) call jax.distributed.initialize(),
which reads the slice's metadata; each host builds its own mask backend (SAM2 sidecar); what is
and is not split per host: launch/README.md. Resuming after preemption needs a --workdir that
outlives the VMs (a mounted bucket or disk): the trainer restarts from its latest checkpoint
there.
(After big_vision's run_tpu.sh and levanter's infra/babysit-tpu-vm.sh, jax_anchors.md §1.7-1.8.)
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from jaxseg.parallel.topology import TopologyError, parse_topology  # noqa: E402

JAX_VERSION = "0.10.2"  # = pyproject's jax pin
TORCH_VERSION = "2.13.0"  # CPU wheel: the SAM2 sidecar runs on the host CPUs
REMOTE_DIR = "~/jaxseg"
RUN_LOG = "~/jaxseg_run.log"
RUN_PID = "~/jaxseg_run.pid"
RUN_DONE = "~/jaxseg_run.done"
GONE_STATES = {"PREEMPTED", "TERMINATED", "STOPPED", "NOT_FOUND", "FAILED", "SUSPENDED"}


@dataclass(frozen=True)
class Slice:
    name: str
    zone: str
    accelerator: str
    project: str | None
    spot: bool

    def gcloud(self, *args: str) -> list[str]:
        base = ["gcloud", "compute", "tpus", "tpu-vm", *args, f"--zone={self.zone}"]
        return base + ([f"--project={self.project}"] if self.project else [])

    def ssh(self, command: str, worker: str = "all") -> list[str]:
        return self.gcloud("ssh", self.name, f"--worker={worker}", f"--command={command}")


# ----------------------------------------------------------------------------- commands
def create_cmd(s: Slice) -> list[str]:
    topo = parse_topology(s.accelerator)
    if topo.kind != "tpu":
        raise TopologyError(f"{s.accelerator} is not a TPU slice")
    cmd = s.gcloud(
        "create",
        s.name,
        f"--accelerator-type={topo.accelerator_type}",
        f"--version={topo.chip.runtime_version}",
    )
    return cmd + (["--spot"] if s.spot else [])


def delete_cmd(s: Slice) -> list[str]:
    return s.gcloud("delete", s.name, "--quiet")


def describe_cmd(s: Slice) -> list[str]:
    return s.gcloud("describe", s.name, "--format=value(state)")


def archive_cmd(tarball: str) -> list[str]:
    return ["git", "-C", str(REPO), "archive", "--format=tar.gz", f"--output={tarball}", "HEAD"]


def copy_cmd(s: Slice, tarball: str) -> list[str]:
    return s.gcloud("scp", tarball, f"{s.name}:~/jaxseg.tar.gz", "--worker=all")


def install_script() -> str:
    """Run on every worker: unpack, Python 3.11 venv (uv), jax[tpu], CPU torch + sam2."""
    py = ".venv/bin/python"
    return " && ".join(
        [
            "set -e",
            f"mkdir -p {REMOTE_DIR}",
            f"tar -xzf ~/jaxseg.tar.gz -C {REMOTE_DIR}",
            f"cd {REMOTE_DIR}",
            "(command -v uv || curl -LsSf https://astral.sh/uv/install.sh | sh)",
            'export PATH="$HOME/.local/bin:$PATH"',
            "uv venv --allow-existing --python 3.11 .venv",
            f"uv pip install --python {py} 'torch=={TORCH_VERSION}' "
            "--index-url https://download.pytorch.org/whl/cpu",
            f"uv pip install --python {py} -e '.[torch]' 'jax[tpu]=={JAX_VERSION}'",
            f"uv pip install --python {py} --no-deps 'sam2==1.1.0'",
        ]
    )


def train_command(config: str, workdir: str, overrides: Sequence[str]) -> str:
    words = [".venv/bin/jaxseg", "train", "--config", config, "--workdir", workdir]
    for item in overrides:
        words += ["--set", item]
    return shlex.join(words)


def run_script(config: str, workdir: str, overrides: Sequence[str]) -> str:
    """Run on every worker: start training detached (survives the ssh session), record its
    pid, touch the done marker when it exits successfully."""
    job = f"{train_command(config, workdir, overrides)} && touch {RUN_DONE}"
    return (
        f"cd {REMOTE_DIR} && rm -f {RUN_DONE} && "
        f"JAXSEG_DISTRIBUTED_AUTO=1 nohup setsid bash -c {shlex.quote(job)} "
        f"> {RUN_LOG} 2>&1 < /dev/null & echo $! > {RUN_PID}"
    )


def alive_script() -> str:
    return f"kill -0 $(cat {RUN_PID}) 2>/dev/null"


def stop_script() -> str:
    """Stops this worker's run (the process group started by setsid), if any."""
    return f"test -f {RUN_PID} && kill -- -$(cat {RUN_PID}) 2>/dev/null; true"


def done_script() -> str:
    return f"test -f {RUN_DONE}"


def plan_cmd(plan_config: str, accelerator: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "jaxseg.cli",
        "plan",
        "--config",
        plan_config,
        "--topology",
        accelerator,
    ]


# ----------------------------------------------------------------------------- babysitting
def decide(state: str, done: bool, alive: bool) -> str:
    """The babysitter's next action from what it observed.

    state: the slice's state ('READY', 'PREEMPTED', ..., 'NOT_FOUND'); done: the done marker
    exists on worker 0; alive: the run's process is alive on every worker."""
    if state in GONE_STATES:
        return "recreate"
    if state != "READY":
        return "wait"  # CREATING, STARTING, REPAIRING, ...
    if done:
        return "finished"
    if not alive:
        return "restart"
    return "wait"


class Executor:
    """Runs commands, or (dry run) prints them; `check=False` commands return their result."""

    def __init__(self, dry_run: bool):
        self.dry_run = dry_run

    def __call__(self, cmd: list[str], check: bool = True) -> subprocess.CompletedProcess:
        print(shlex.join(cmd), flush=True)
        if self.dry_run:
            return subprocess.CompletedProcess(cmd, 0, stdout="", stderr="")
        result = subprocess.run(cmd, text=True, capture_output=not check)
        if check and result.returncode != 0:
            raise SystemExit(f"tpu.py: command failed ({result.returncode}): {shlex.join(cmd)}")
        return result


def action_create(ex, s, args):
    if args.plan_config:
        ex(plan_cmd(args.plan_config, s.accelerator))  # exits non-zero when it does not fit
    ex(create_cmd(s))


def action_setup(ex, s, args):
    tarball = f"/tmp/jaxseg-{s.name}.tar.gz"
    ex(archive_cmd(tarball))
    ex(copy_cmd(s, tarball))
    ex(s.ssh(install_script()))


def action_run(ex, s, args):
    _require_run_args(args)
    ex(s.ssh(stop_script()))
    ex(s.ssh(run_script(args.config, args.workdir, args.set)))


def action_up(ex, s, args):
    _require_run_args(args)
    action_create(ex, s, args)
    action_setup(ex, s, args)
    action_run(ex, s, args)


def action_status(ex, s, args):
    ex(describe_cmd(s))
    ex(s.ssh(f"tail -n 20 {RUN_LOG}", worker="0"))


def action_delete(ex, s, args):
    ex(delete_cmd(s))


def observe(ex, s) -> tuple[str, bool, bool]:
    described = ex(describe_cmd(s), check=False)
    if described.returncode != 0:
        return "NOT_FOUND", False, False
    state = (described.stdout or "").strip() or "UNKNOWN"
    if state != "READY":
        return state, False, False
    done = ex(s.ssh(done_script(), worker="0"), check=False).returncode == 0
    alive = ex(s.ssh(alive_script()), check=False).returncode == 0
    return state, done, alive


def action_babysit(ex, s, args):
    _require_run_args(args)
    if ex.dry_run:  # print one round: what is polled and what each outcome runs
        print(f"# babysit: poll every {args.interval} s")
        ex(describe_cmd(s))
        ex(s.ssh(done_script(), worker="0"))
        ex(s.ssh(alive_script()))
        print("# state PREEMPTED / TERMINATED / gone: delete, re-create, set up, run")
        ex(delete_cmd(s))
        action_create(ex, s, args)
        action_setup(ex, s, args)
        action_run(ex, s, args)
        print("# READY, run not alive on every worker and no done marker: run again")
        action_run(ex, s, args)
        print(f"# READY and {RUN_DONE} on worker 0: finished")
        return
    restarts = 0
    while True:
        state, done, alive = observe(ex, s)
        step = decide(state, done, alive)
        print(f"# {time.strftime('%H:%M:%S')} state={state} done={done} alive={alive} -> {step}")
        if step == "finished":
            return
        if step in ("recreate", "restart"):
            restarts += 1
            if restarts > args.max_restarts:
                raise SystemExit(f"tpu.py: gave up after {args.max_restarts} restarts")
            if step == "recreate":
                ex(delete_cmd(s), check=False)  # may already be gone
                action_create(ex, s, args)
                action_setup(ex, s, args)
            action_run(ex, s, args)
        time.sleep(args.interval)


ACTIONS = {
    "create": action_create,
    "setup": action_setup,
    "run": action_run,
    "up": action_up,
    "status": action_status,
    "babysit": action_babysit,
    "delete": action_delete,
}


def _require_run_args(args) -> None:
    if not args.config or not args.workdir:
        raise SystemExit("tpu.py: --config and --workdir are required to run training")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("action", choices=sorted(ACTIONS))
    p.add_argument("--name", required=True, help="TPU VM name")
    p.add_argument("--zone", required=True)
    p.add_argument("--accelerator", required=True, help="e.g. v5p-32, v5litepod-16, v6e-8")
    p.add_argument("--project", default=None)
    p.add_argument("--spot", action="store_true", help="preemptible (spot) capacity")
    p.add_argument("--config", default=None, help="jaxseg train --config")
    p.add_argument("--workdir", default=None, help="run directory that survives the VMs")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--plan-config", default=None, help="refuse to create unless this fits")
    p.add_argument("--interval", type=int, default=60, help="babysit poll period (s)")
    p.add_argument("--max-restarts", type=int, default=20)
    p.add_argument("--dry-run", action="store_true", help="print every command, run nothing")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        parse_topology(args.accelerator)
    except TopologyError as err:
        raise SystemExit(f"tpu.py: {err}") from err
    s = Slice(args.name, args.zone, args.accelerator, args.project, args.spot)
    ACTIONS[args.action](Executor(args.dry_run), s, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
