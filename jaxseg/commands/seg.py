"""`jaxseg seg`: VideoSEG-O3's [SEG] route, calibration on vs off, on the synthetic benchmark.

    jaxseg seg --config o3_seg --workdir runs/o3_seg --seeds 0,1

Per seed (<workdir>/seed<k>/): data, one cold start, GRPO with SEG-aware calibration and
GRPO without it from the same cold-start weights, each evaluated on the held-out split.
Writes <workdir>/report.md: held-out J, F, J&F per seed and variant (jaxseg.seg.train).
Each seed's config is kept in <workdir>/seed<k>/config.json; a re-run with another config is
refused (the differing keys listed) unless --allow-config-change.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

VARIANTS = ("sft", "calibrated", "uncalibrated")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="o3_seg", help="config spec: file.py[:arg] or a name")
    parser.add_argument("--workdir", required=True, help="run directory")
    parser.add_argument("--seeds", default="0,1", help="comma-separated training seeds")
    from jaxseg.commands.train import add_common_arguments

    add_common_arguments(parser)  # --set, --allow-config-change, --no-progress


def report_table(per_seed: dict[int, dict]) -> str:
    """Markdown: one row per (seed, variant) with held-out J, F, J&F (percent, jaxseg.eval
    overall), mean episode reward and turn parse rate."""
    lines = [
        "| seed | variant | J | F | J&F | reward | parse ok | expressions |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for seed, res in sorted(per_seed.items()):
        for v in VARIANTS:
            s = res[v]
            o = s["overall"]
            lines.append(
                f"| {seed} | {v} | {o['J']:.1f} | {o['F']:.1f} | {o['JF']:.1f} | "
                f"{s['reward_mean']:.2f} | {s['parse_ok']:.2f} | {o.get('count', '')} |"
            )
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    from jaxseg.commands.train import check_protocol, ensure_data
    from jaxseg.config import load_config
    from jaxseg.seg.train import calibration_ablation
    from jaxseg.train.runconfig import resolve_workdir, save_run_config

    root = Path(args.workdir)
    for seed in [int(s) for s in args.seeds.split(",") if s.strip()]:
        spec = args.config + ("," if ":" in args.config else ":") + f"seed={seed}"
        config = load_config(spec, args.set)
        check_protocol(config)
        run = root / f"seed{seed}"
        run.mkdir(parents=True, exist_ok=True)
        save_run_config(run, resolve_workdir(config, run), allow_change=args.allow_config_change)
        ensure_data(config, progress=not args.no_progress, workdir=run)
        calibration_ablation(config, run, progress=not args.no_progress)
        print(write_report(root, args.config, args.set))
    return 0


def write_report(root: Path, config: str, overrides) -> str:
    """<root>/report.md from every finished <root>/seed<k>/ablation.json (seeds may run as
    separate processes)."""
    per_seed = {
        int(p.parent.name.removeprefix("seed")): json.loads(p.read_text())
        for p in sorted(root.glob("seed*/ablation.json"))
    }
    table = report_table(per_seed)
    (root / "report.md").write_text(
        "# o3 [SEG] route: held-out J&F, SEG-aware calibration on vs off\n\n"
        f"config: `{config}` {' '.join(overrides)}\n\n" + table
    )
    return table
