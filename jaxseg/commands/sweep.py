"""`jaxseg sweep`: expand a config's ``get_sweep(hyper)`` into runs and print or run them."""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys

from jaxseg.config import format_overrides, load_sweep


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="config spec: file.py[:arg] or a name")
    parser.add_argument(
        "--command", default="train", help="jaxseg subcommand each run executes (default: train)"
    )
    parser.add_argument("--workdir", default="runs/sweep", help="parent of the per-run workdirs")
    parser.add_argument("--run", action="store_true", help="run them one after another")


def sweep_commands(args: argparse.Namespace) -> list[list[str]]:
    commands = []
    for i, run in enumerate(load_sweep(args.config)):
        cmd = [
            "jaxseg",
            args.command,
            "--config",
            args.config,
            "--workdir",
            f"{args.workdir}/{i:03d}",
        ]
        for override in format_overrides(run):
            cmd += ["--set", override]
        commands.append(cmd)
    return commands


def run(args: argparse.Namespace) -> int:
    commands = sweep_commands(args)
    for cmd in commands:
        print(shlex.join(cmd))
    if not args.run:
        return 0
    for i, cmd in enumerate(commands):
        print(f"[sweep {i + 1}/{len(commands)}] {shlex.join(cmd)}", file=sys.stderr)
        rc = subprocess.call([sys.executable, "-m", "jaxseg.cli", *cmd[1:]])
        if rc:
            print(f"[sweep] run {i} failed with exit code {rc}; stopping", file=sys.stderr)
            return rc
    return 0
