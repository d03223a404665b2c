"""`jaxseg demo`: the end-to-end demo on the embedded default (configs/synthetic_tiny.py).

generate the synthetic benchmark -> build a tiny Qwen2.5-VL-architecture policy ->
evaluate it untrained -> single-frame grounding pretraining (the base skill a real VLM brings)
-> cold-start SFT on the protocol's oracle traces -> evaluate ->
GRPO with the classical mask backend -> evaluate -> report (markdown + PNGs) with J, F,
J&F, R per query type for untrained / SFT / SFT+GRPO, reward and KL curves, mask overlays
and example reasoning traces. Resumable: re-run on the same --workdir.
"""

from __future__ import annotations

import argparse
import time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="demo", help="config spec (default: demo)")
    parser.add_argument("--workdir", default="runs/demo", help="output directory")
    parser.add_argument("--protocol", default=None, help="veason | rcot | o3 | revseg")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="a few steps of each stage")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field"
    )
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from jaxseg.commands.train import ensure_data
    from jaxseg.config import load_config
    from jaxseg.eval.aggregate import format_table
    from jaxseg.train.report import write_report
    from jaxseg.train.trainer import Experiment

    overrides = list(args.set)
    if args.protocol:
        overrides.append(f"protocol.name={args.protocol}")
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    spec = args.config + (":quick" if args.quick and ":" not in args.config else "")
    config = load_config(spec, overrides)
    t0 = time.perf_counter()
    progress = not args.no_progress
    ensure_data(config, progress=progress)
    exp = Experiment(config, args.workdir, progress=progress)
    stages = (("init", None), ("pretrain", exp.pretrain), ("sft", exp.sft), ("grpo", exp.grpo))
    for tag, stage in stages:
        if stage is not None:
            stage()
        if tag == "pretrain":  # scored on held-out grounding, not with the protocol
            grounding = exp.workdir / "pretrain" / "grounding.json"
            if grounding.is_file():
                print(f"\n[pretrain] held-out single-frame grounding: {grounding.read_text()}")
            continue
        summary_path = exp.workdir / "eval" / tag / "summary.json"
        if not summary_path.is_file():
            summary = exp.evaluate(tag)
        else:
            import json

            summary = json.loads(summary_path.read_text())
        print(f"\n[{tag}] held-out {config.data.eval_split}:\n{format_table(summary)}")
    report = write_report(exp.workdir, config.data.root)
    print(f"\nreport: {report}  ({time.perf_counter() - t0:.0f} s)")
    return 0
