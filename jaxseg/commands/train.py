"""`jaxseg train`: data -> SFT -> GRPO -> evaluation for one config, resumable.

    jaxseg train --config demo --workdir runs/demo
    jaxseg train --config demo:protocol=o3,quick --workdir runs/q --stages sft,eval
    jaxseg train --config configs/my.py --workdir runs/x --set grpo.kl_coef=0.0

Re-running on the same workdir resumes each stage from its latest checkpoint.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

STAGES = ("data", "pretrain", "sft", "grpo", "eval")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="demo", help="config spec: file.py[:arg] or a name")
    parser.add_argument("--workdir", required=True, help="run directory (resumes if it exists)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field"
    )
    parser.add_argument(
        "--stages",
        default=",".join(STAGES),
        help=f"comma-separated subset of {','.join(STAGES)} (default: all)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def ensure_data(config, *, progress: bool = True) -> Path:
    """Writes the synthetic benchmark at data.root unless it is already there (same seed)."""
    from jaxseg.data.synth import SynthConfig, write_benchmark
    from jaxseg.data.synth.writer import PARTIAL_MARKER

    d = config.data
    root = Path(d.root)
    if "synth" not in d:
        raise ValueError(
            f"data.synth is not set: {root} is a real benchmark, nothing to generate "
            "(leave 'data' out of --stages)"
        )
    marker = root / "jaxseg_synth.json"
    partial = root / PARTIAL_MARKER  # a generation that did not finish
    wanted = {
        "splits": {d.train_split: d.synth.videos, d.eval_split: d.synth.valid_videos},
        "seed": d.synth.seed,
        "difficulty": d.synth.difficulty,
        "position_ramp": float(d.synth.get("position_ramp", 0.0)),
    }
    if marker.is_file() and json.loads(marker.read_text()) == wanted:
        return root
    if root.exists() and any(root.iterdir()) and not (marker.is_file() or partial.is_file()):
        raise FileExistsError(
            f"data.root {root} exists and is not a synthetic benchmark written by jaxseg; "
            "refusing to overwrite it (point data.root elsewhere)"
        )
    root.mkdir(parents=True, exist_ok=True)
    partial.write_text(json.dumps(wanted))
    write_benchmark(
        root,
        wanted["splits"],
        seed=d.synth.seed,
        cfg=SynthConfig.preset(d.synth.difficulty, position_ramp=wanted["position_ramp"]),
        overwrite=True,
        progress=progress,
    )
    marker.write_text(json.dumps(wanted))
    partial.unlink(missing_ok=True)
    return root


def run_stages(config, workdir: str | Path, stages, *, progress: bool = True) -> dict:
    from jaxseg.train.trainer import Experiment

    unknown = set(stages) - set(STAGES)
    if unknown:
        raise SystemExit(f"unknown stages {sorted(unknown)}; choose from {STAGES}")
    results: dict = {}
    if "data" in stages and "synth" in config.data:
        ensure_data(config, progress=progress)
    exp = Experiment(config, workdir, progress=progress)
    if "pretrain" in stages:
        results["pretrain"] = exp.pretrain()
    if "sft" in stages:
        results["sft"] = exp.sft()
    if "grpo" in stages:
        results["grpo"] = exp.grpo()
    if "eval" in stages:
        loaded = exp.load_stage("grpo") is not None or exp.load_stage("sft") is not None
        tag = "grpo" if (Path(workdir) / "grpo" / "ckpt").is_dir() else "sft" if loaded else "init"
        results["eval"] = exp.evaluate(tag)
    return results


def run(args: argparse.Namespace) -> int:
    from jaxseg.config import load_config
    from jaxseg.eval.aggregate import format_table

    config = load_config(args.config, args.set)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    results = run_stages(config, args.workdir, stages, progress=not args.no_progress)
    if "eval" in results:
        print(format_table(results["eval"]))
    return 0
