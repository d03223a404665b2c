"""`jaxseg sweep`: expand a config's ``get_sweep(hyper)`` into runs and print or run them.

    jaxseg sweep --config demo --workdir runs/sweep                 # print the commands
    jaxseg sweep --config demo --set sft.steps=50 --run --keep-going

Each run's folder is named after its swept values (``runs/sweep/seed=0,name=o3``); ``--set``
overrides go to every run (before the swept values; setting a swept key is an error). With
``--run`` the runs execute one after another; a failed run stops the sweep unless
``--keep-going``, which runs the rest and exits 1 naming the failures.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from typing import Any

from jaxseg.config import (
    ConfigError,
    apply_overrides,
    format_overrides,
    load_config,
    load_sweep,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="config spec: file.py[:arg] or a name")
    parser.add_argument(
        "--command", default="train", help="jaxseg subcommand each run executes (default: train)"
    )
    parser.add_argument("--workdir", default="runs/sweep", help="parent of the per-run workdirs")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field in every run (repeatable)",
    )
    parser.add_argument("--run", action="store_true", help="run them one after another")
    parser.add_argument(
        "--keep-going",
        action="store_true",
        help="with --run: go on past a failed run (exit 1 at the end if any failed)",
    )


def run_name(run: dict[str, Any]) -> str:
    """A folder name from a run's swept values: ``{"seed": 0, "protocol.name": "o3"}`` ->
    ``seed=0,name=o3`` (the last part of each key; the whole key where two would clash)."""
    leaves = [key.rsplit(".", 1)[-1] for key in run]
    parts = []
    for key, leaf, value in zip(run, leaves, run.values()):
        label = leaf if leaves.count(leaf) == 1 else key
        parts.append(f"{label}={value}")
    name = re.sub(r"[^A-Za-z0-9._=,+-]+", "_", ",".join(parts)) or "run"
    return name[:200]


def sweep_commands(args: argparse.Namespace) -> list[list[str]]:
    runs = load_sweep(args.config)
    fixed = list(getattr(args, "set", []) or [])
    fixed_keys = {item.partition("=")[0].strip() for item in fixed}
    clash = sorted(fixed_keys & {k for run in runs for k in run})
    if clash:
        raise ConfigError(f"--set {clash} would override what the sweep varies")
    apply_overrides(load_config(args.config), fixed)  # a typo fails now, named
    names: dict[str, int] = {}
    commands = []
    for run in runs:
        name = run_name(run)
        names[name] = names.get(name, 0) + 1
        if names[name] > 1:  # the same values twice (e.g. Hyper.chain)
            name = f"{name}.{names[name]}"
        cmd = ["jaxseg", args.command, "--config", args.config]
        cmd += ["--workdir", f"{args.workdir.rstrip('/')}/{name}"]
        for override in [*fixed, *format_overrides(run)]:
            cmd += ["--set", override]
        commands.append(cmd)
    return commands


def run(args: argparse.Namespace) -> int:
    commands = sweep_commands(args)
    for cmd in commands:
        print(shlex.join(cmd))
    if not args.run:
        return 0
    failed = []
    for i, cmd in enumerate(commands):
        print(f"[sweep {i + 1}/{len(commands)}] {shlex.join(cmd)}", file=sys.stderr)
        rc = subprocess.call([sys.executable, "-m", "jaxseg.cli", *cmd[1:]])
        if rc:
            workdir = cmd[cmd.index("--workdir") + 1]
            failed.append(f"{workdir} (exit {rc})")
            if not args.keep_going:
                print(f"[sweep] {workdir} failed with exit code {rc}; stopping", file=sys.stderr)
                return rc
            print(f"[sweep] {workdir} failed with exit code {rc}; going on", file=sys.stderr)
    if failed:
        print(f"[sweep] {len(failed)} of {len(commands)} runs failed: " + ", ".join(failed),
              file=sys.stderr)  # fmt: skip
        return 1
    return 0
