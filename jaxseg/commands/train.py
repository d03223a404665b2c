"""`jaxseg train`: data -> SFT -> GRPO -> evaluation for one config, resumable.

    jaxseg train --config demo --workdir runs/demo
    jaxseg train --config demo:protocol=o3,quick --workdir runs/q --stages sft,eval
    jaxseg train --config configs/my.py --workdir runs/x --set grpo.kl_coef=0.0

Re-running on the same workdir resumes each stage from its latest checkpoint; a re-run with
another config is refused (the differing keys are listed) unless --allow-config-change.
The workdir may be a bucket (gs://bucket/run, through etils.epath); the synthetic benchmark
of the demo config is written under it (data.root = "{workdir}/data/synth").
"""

from __future__ import annotations

import argparse
import json

from jaxseg.paths import as_path, staged_dir

STAGES = ("data", "pretrain", "sft", "grpo", "eval")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="demo", help="config spec: file.py[:arg] or a name")
    parser.add_argument(
        "--workdir", required=True, help="run directory, local or gs://... (resumes if it exists)"
    )
    add_common_arguments(parser)
    parser.add_argument(
        "--stages",
        default=",".join(STAGES),
        help=f"comma-separated subset of {','.join(STAGES)}",
    )


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """--set, --allow-config-change and --no-progress: the same for train, demo and seg."""
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field (repeatable), e.g. --set grpo.kl_coef=0.0",
    )
    parser.add_argument(
        "--allow-config-change",
        action="store_true",
        help="resume a workdir whose saved config.json differs (the old one goes to "
        "config_history/); refused otherwise",
    )
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bars (progress is still logged every metrics.log_every steps)",
    )


def print_written(*paths) -> None:
    """`wrote <path>` for each of `paths` that exists (process 0 only)."""
    from jaxseg.train.progress import process_index

    if process_index() != 0:
        return
    for path in map(as_path, paths):
        if path.exists():
            print(f"wrote {path}")


def check_protocol(config) -> None:
    """An unknown protocol.name fails before any work, with a "did you mean"."""
    from jaxseg.config import ConfigError, did_you_mean
    from jaxseg.protocols.registry import PROTOCOLS

    name = config.get("protocol", {}).get("name")
    if name is not None and name not in PROTOCOLS:
        raise ConfigError(
            f"protocol.name = {name!r} is not a protocol{did_you_mean(name, PROTOCOLS)}; "
            f"choose one of {sorted(PROTOCOLS)}"
        )


def ensure_data(config, *, progress: bool = True, workdir=None):
    """Writes the synthetic benchmark at data.root (``{workdir}`` filled in from `workdir`;
    local or a bucket) unless it is already there (same seed); returns the root."""
    from jaxseg.data.synth import SynthConfig, write_benchmark
    from jaxseg.data.synth.writer import PARTIAL_MARKER
    from jaxseg.train.progress import bars
    from jaxseg.train.runconfig import resolve_workdir

    if workdir is not None:
        resolve_workdir(config, workdir)
    d = config.data
    root = as_path(d.root)
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
    with staged_dir(root) as local:  # a bucket: generated locally, then uploaded
        write_benchmark(
            local,
            wanted["splits"],
            seed=d.synth.seed,
            cfg=SynthConfig.preset(d.synth.difficulty, position_ramp=wanted["position_ramp"]),
            overwrite=True,
            progress=bars(progress),  # no tqdm bars into a cluster log
        )
    marker.write_text(json.dumps(wanted))
    partial.unlink(missing_ok=True)
    return root


def run_stages(
    config, workdir, stages, *, progress: bool = True, allow_config_change: bool = False
) -> dict:
    from jaxseg.config import ConfigError, did_you_mean
    from jaxseg.train.trainer import Experiment

    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        hint = did_you_mean(unknown[0], STAGES)
        raise ConfigError(f"unknown stage(s) {unknown}{hint}; choose from {','.join(STAGES)}")
    check_protocol(config)
    results: dict = {}
    if "data" in stages and "synth" in config.data:
        ensure_data(config, progress=progress, workdir=workdir)
    exp = Experiment(config, workdir, progress=progress, allow_config_change=allow_config_change)
    if "pretrain" in stages:
        results["pretrain"] = exp.pretrain()
    if "sft" in stages:
        results["sft"] = exp.sft()
    if "grpo" in stages:
        results["grpo"] = exp.grpo()
    if "eval" in stages:
        loaded = exp.load_stage("grpo") is not None or exp.load_stage("sft") is not None
        tag = (
            "grpo" if (as_path(workdir) / "grpo" / "ckpt").is_dir() else "sft" if loaded else "init"
        )
        results["eval"] = exp.evaluate(tag)
    return results


def run(args: argparse.Namespace) -> int:
    from jaxseg.config import load_config
    from jaxseg.eval.aggregate import format_table
    from jaxseg.train import progress

    config = load_config(args.config, args.set)
    progress.configure(config)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    results = run_stages(
        config,
        args.workdir,
        stages,
        progress=not args.no_progress,
        allow_config_change=args.allow_config_change,
    )
    if "eval" in results and progress.process_index() == 0:
        print(format_table(results["eval"]))
        written = [f"eval/{results['eval'].get('tag', '')}"]
    else:
        written = []
    if "data" in stages and "synth" in config.data:
        print_written(config.data.root)
    root = as_path(args.workdir)
    print_written(*(root / name for name in ("config.json", *STAGES[1:4], *written)))
    return 0
