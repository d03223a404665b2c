"""`jaxseg demo`: the end-to-end demo on the embedded default (configs/synthetic_tiny.py).

generate the synthetic benchmark -> build a tiny Qwen2.5-VL-architecture policy ->
evaluate it untrained -> single-frame grounding pretraining (the base skill a real VLM brings)
-> cold-start SFT on the protocol's oracle traces -> evaluate ->
GRPO with the classical mask backend -> evaluate -> report (markdown + PNGs) with J, F,
J&F, R per query type for untrained / SFT / SFT+GRPO, reward and KL curves, mask overlays
and example reasoning traces. Resumable: re-run on the same --workdir (with the same config:
another is refused unless --allow-config-change). The benchmark is generated under the
workdir (`<workdir>/data/synth`); the workdir may be a bucket (gs://...).
"""

from __future__ import annotations

import argparse
import time

PROTOCOLS = ("veason", "rcot", "o3", "revseg")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from jaxseg.commands.train import add_common_arguments

    parser.add_argument("--config", default="demo", help="config spec: file.py[:arg] or a name")
    parser.add_argument("--workdir", default="runs/demo", help="output directory (or gs://...)")
    parser.add_argument(
        "--protocol",
        default=None,
        choices=PROTOCOLS,
        help="the config's `protocol` knob (default: the config's own)",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed (default: the config's)")
    parser.add_argument("--quick", action="store_true", help="a few steps of each stage")
    add_common_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from jaxseg.commands.train import check_protocol, print_written
    from jaxseg.config import load_config
    from jaxseg.train import progress as progress_lib

    overrides = list(args.set)
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    spec = with_config_args(
        args.config, quick=args.quick, **({"protocol": args.protocol} if args.protocol else {})
    )
    config = load_config(spec, overrides)
    progress_lib.configure(config)
    check_protocol(config)
    t0 = time.perf_counter()
    progress = not args.no_progress
    exp, _ = train_and_evaluate(
        config, args.workdir, progress=progress, allow_config_change=args.allow_config_change
    )
    say = print if progress_lib.process_index() == 0 else (lambda *a, **k: None)
    report = _report(exp.workdir, config.data.root) if progress_lib.process_index() == 0 else None
    say(f"\nreport: {report}  ({time.perf_counter() - t0:.0f} s)")
    print_written(
        config.data.root,
        *(exp.workdir / n for n in ("config.json", "pretrain", "sft", "grpo", "eval")),
        *([report] if report is not None else []),
    )
    return 0


def with_config_args(spec: str, *, quick: bool = False, **args) -> str:
    """`spec` with more `:arg` knobs: `demo` + protocol=revseg -> `demo:protocol=revseg`
    (a knob may set several fields: the demo's `protocol=revseg` also turns SFT off)."""
    name, _, given = spec.partition(":")
    items = [x for x in given.split(",") if x]
    if quick and "quick" not in items:
        items.append("quick")
    items += [f"{k}={v}" for k, v in args.items()]
    return name + (":" + ",".join(items) if items else "")


def train_and_evaluate(config, workdir, *, progress: bool = True, allow_config_change=False):
    """The demo's stages on `workdir` (resumed): the benchmark, the untrained policy's
    held-out evaluation, pretraining (if configured), cold-start SFT (unless `sft.steps` is
    0, as ReVSeg's RL from the base), evaluation, GRPO, evaluation. Returns the Experiment
    and {tag: held-out summary} (tags init / sft / grpo; an evaluation already on disk is
    read back, not rerun)."""
    import json

    from jaxseg.commands.train import ensure_data
    from jaxseg.eval.aggregate import format_table
    from jaxseg.train import progress as progress_lib
    from jaxseg.train.trainer import Experiment

    ensure_data(config, progress=progress, workdir=workdir)
    exp = Experiment(config, workdir, progress=progress, allow_config_change=allow_config_change)
    say = print if progress_lib.process_index() == 0 else (lambda *a, **k: None)
    with_sft = int(config.sft.steps) > 0
    stages = (("init", None), ("pretrain", exp.pretrain), ("sft", exp.sft), ("grpo", exp.grpo))
    summaries = {}
    for tag, stage in stages:
        if tag == "sft" and not with_sft:
            continue
        if stage is not None:
            stage()
        if tag == "pretrain":  # scored on held-out grounding, not with the protocol
            grounding = exp.workdir / "pretrain" / "grounding.json"
            if grounding.is_file():
                say(f"\n[pretrain] held-out single-frame grounding: {grounding.read_text()}")
            continue
        summary_path = exp.workdir / "eval" / tag / "summary.json"
        if not summary_path.is_file():
            summary = exp.evaluate(tag)
        else:
            summary = json.loads(summary_path.read_text())
        summaries[tag] = summary
        say(f"\n[{tag}] held-out {config.data.eval_split}:\n{format_table(summary)}")
    return exp, summaries


def _report(workdir, data_root):
    """write_report on the run; for a bucket workdir, on a local copy of what it reads
    (config, metrics, evaluations), with the report's files uploaded back."""
    import shutil
    import tempfile
    from pathlib import Path

    from jaxseg.paths import as_path, download, is_remote, local_dir, upload
    from jaxseg.train.report import write_report

    if not is_remote(workdir):
        return write_report(workdir, data_root)
    root = as_path(workdir)
    tmp = Path(tempfile.mkdtemp(prefix="jaxseg-report-"))
    try:
        for name in ("config.json", *(f"{s}/{f}" for s in ("pretrain", "sft", "grpo")
                                      for f in ("metrics.jsonl", "grounding.json"))):  # fmt: skip
            if (root / name).is_file():
                (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                (tmp / name).write_bytes((root / name).read_bytes())
        if (root / "eval").is_dir():
            download(root / "eval", tmp / "eval")
        before = {p for p in tmp.rglob("*") if p.is_file()}
        report = write_report(tmp, local_dir(data_root))
        new = [p for p in tmp.rglob("*") if p.is_file() and p not in before]
        out = Path(tempfile.mkdtemp(prefix="jaxseg-report-out-"))
        try:
            for path in new:  # the report and its figures only
                target = out / path.relative_to(tmp)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
            upload(out, root)
        finally:
            shutil.rmtree(out, ignore_errors=True)
        return root / report.relative_to(tmp).as_posix()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
