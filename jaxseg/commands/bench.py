"""`jaxseg bench`: list and run the benchmark scripts in the repository's ``bench/`` folder.

Each script compares jaxseg with its reference (transformers, sam2, ...) side by side in
one process and prints the ratio; this command only finds and launches them.
"""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"


def available() -> dict[str, tuple[Path, str]]:
    """name -> (script, first docstring line) for every ``bench/bench_*.py``."""
    out = {}
    for path in sorted(BENCH_DIR.glob("bench_*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        out[path.stem.removeprefix("bench_")] = (path, doc.strip().splitlines()[0] if doc else "")
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", help="benchmark to run (omit to list them)")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the script")


def run(args: argparse.Namespace) -> int:
    benches = available()
    if not args.name:
        if not benches:
            print(f"no benchmarks in {BENCH_DIR}")
        for name, (_, doc) in benches.items():
            print(f"{name:<20} {doc}")
        return 0
    if args.name not in benches:
        print(f"unknown benchmark {args.name!r}; available: {sorted(benches)}", file=sys.stderr)
        return 2
    return subprocess.call([sys.executable, str(benches[args.name][0]), *args.args])
