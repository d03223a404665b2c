"""`jaxseg bench`: list and run the benchmark scripts in the repository's ``bench/`` folder.

Each script compares jaxseg with its reference (transformers, sam2, the serial or per-row
variant, the machine's matmul peak) side by side in one process and prints the ratio; this
command only finds and launches them. ``jaxseg bench all`` runs every one with the short
settings of `QUICK` (the whole set in under 10 minutes on a 2-core CPU) and prints each
script's output under its name, then one line per script with its status and seconds.
"""

from __future__ import annotations

import argparse
import ast
import os
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"

# `jaxseg bench all`: each script's short settings and time limit (seconds)
QUICK: dict[str, tuple[list[str], int]] = {
    "qwen_forward": (["--repeats", "3"], 100),
    "sampler": (["--repeats", "1", "--new-tokens", "32"], 140),
    "group_kv": (["--prompt", "4096", "--repeats", "1"], 80),
    "grpo_step": (["--presets", "tiny,small", "--repeats", "2"], 110),
    "reward_overlap": (["--backend", "classical", "--repeats", "1", "--new-tokens", "16"], 80),
    "sam2_decoder": (["--preset", "tiny", "--repeats", "3"], 30),
    "sidecar": (["--frames", "8", "--reps", "2"], 50),
}


def available() -> dict[str, tuple[Path, str]]:
    """name -> (script, first docstring line) for every ``bench/bench_*.py``."""
    out = {}
    for path in sorted(BENCH_DIR.glob("bench_*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        out[path.stem.removeprefix("bench_")] = (path, doc.strip().splitlines()[0] if doc else "")
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", help="benchmark to run, or 'all' (omit to list them)")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the script")


def run_all(benches: dict[str, tuple[Path, str]]) -> int:
    """Every benchmark with its `QUICK` settings; a script without them runs with none."""
    results = []
    for name, (path, _) in benches.items():
        extra, limit = QUICK.get(name, ([], 60))
        print(f"\n===== {name}: {path.name} {' '.join(extra)} (limit {limit} s)", flush=True)
        t0 = time.perf_counter()
        try:
            rc = subprocess.call([sys.executable, str(path), *extra], timeout=limit)
        except subprocess.TimeoutExpired:
            rc = "timeout"
        results.append((name, rc, time.perf_counter() - t0))
    load = os.getloadavg()[0]
    print(f"\n===== jaxseg bench all (load average {load:.2f})")
    for name, rc, seconds in results:
        status = "ok" if rc == 0 else f"failed ({rc})"
        print(f"{name:<16} {status:<14} {seconds:6.1f} s")
    print(f"{'total':<16} {'':<14} {sum(s for _, _, s in results):6.1f} s")
    return 0 if all(rc == 0 for _, rc, _ in results) else 1


def run(args: argparse.Namespace) -> int:
    benches = available()
    if not args.name:
        if not benches:
            print(f"no benchmarks in {BENCH_DIR}")
        for name, (_, doc) in benches.items():
            print(f"{name:<20} {doc}")
        print(f"{'all':<20} every benchmark above with short settings (under 10 minutes)")
        return 0
    if args.name == "all":
        return run_all(benches)
    if args.name not in benches:
        print(f"unknown benchmark {args.name!r}; available: {sorted(benches)}", file=sys.stderr)
        return 2
    return subprocess.call([sys.executable, str(benches[args.name][0]), *args.args])
