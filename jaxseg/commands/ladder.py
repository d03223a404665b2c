"""`jaxseg ladder`: the learning ladder, untrained < SFT < SFT+GRPO, for several protocols
and training seeds, on the usual held-out split and on a harder benchmark.

    jaxseg ladder                                    # 4 protocols x seeds 0, 1 (hours on 2 cores)
    jaxseg ladder --protocols veason --seeds 0       # one rung set: what `make demo` runs
    jaxseg ladder --quick --workdir /tmp/ladder      # a few steps of everything

Each (protocol, seed) is the demo's run (`jaxseg.commands.demo.train_and_evaluate`, resumed
on re-run) in `<workdir>/<protocol>-seed<seed>`, with its own report (reward, KL and held-out
J&F curves). ReVSeg trains RL from the base (its `protocol=revseg` knob turns SFT off), so
its rungs are base and base+GRPO. Then every stage's checkpoint is evaluated again on a
benchmark generated with another generator seed (`--hard-seed`) and `difficulty="hard"`
(`<run>/hard/eval/<tag>`), never trained on. Beside the rungs, the box prior: the
protocol's answers about the training targets' mean box on the first frame shown, never
"no target" (`jaxseg.protocols.scripted.PriorPolicy`), what a policy that ignores the video
scores. `<workdir>/ladder.md` gets both tables: J, F and J&F per query type (referring,
reasoning, null) for each rung, and the mean over seeds of reasoning J&F per protocol.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

from jaxseg.train.report import percent

from .demo import PROTOCOLS

SUBSETS = ("referring", "reasoning", "null")
RUNGS = ("init", "sft", "grpo")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from jaxseg.commands.train import add_common_arguments

    parser.add_argument("--config", default="demo", help="config spec with a `protocol` knob")
    parser.add_argument("--workdir", default="runs/ladder", help="parent of the runs")
    parser.add_argument(
        "--protocols", default=",".join(PROTOCOLS), help="comma-separated protocols"
    )
    parser.add_argument("--seeds", default="0,1", help="comma-separated training seeds")
    parser.add_argument(
        "--hard-seed", type=int, default=2024, help="generator seed of the hard benchmark"
    )
    parser.add_argument("--no-hard", action="store_true", help="skip the hard benchmark")
    parser.add_argument(
        "--prior-only",
        action="store_true",
        help="only the box prior's rows (no training): what ignoring the video scores",
    )
    parser.add_argument("--quick", action="store_true", help="a few steps of each stage")
    add_common_arguments(parser)


def rung_name(protocol: str, tag: str) -> str:
    if tag == "prior":
        return "prior (mean box)"
    if tag == "init":
        return "base"
    if tag == "sft":
        return "SFT"
    return "base+GRPO" if protocol == "revseg" else "SFT+GRPO"


def ladder_table(rows: list[tuple[str, int, str, dict]]) -> str:
    """Markdown: one line per (protocol, seed, rung): J, F, J&F per query type (x100) and
    the mean episode reward; `rows` = (protocol, seed, tag, held-out summary)."""
    head = ["protocol", "seed", "policy"]
    head += [f"{m} {s}" for s in SUBSETS for m in ("J", "F", "J&F")] + ["reward"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for protocol, seed, tag, summary in rows:
        cells = [protocol, str(seed), rung_name(protocol, tag)]
        for s in SUBSETS:
            sub = summary.get("subsets", {}).get(s, {})
            cells += [percent(sub.get(m)) for m in ("J", "F", "JF")]
        cells.append(f"{summary.get('reward', {}).get('reward/total', float('nan')):.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def seed_means(rows: list[tuple[str, int, str, dict]], subset: str = "reasoning") -> str:
    """Markdown: per protocol, the mean over seeds of `subset` J&F at each rung, and the
    rungs' differences."""
    by: dict[str, dict[str, list[float]]] = {}
    for protocol, _, tag, summary in rows:
        value = summary.get("subsets", {}).get(subset, {}).get("JF")
        if value is not None and value == value:
            by.setdefault(protocol, {}).setdefault(tag, []).append(float(value))
    lines = [
        f"| protocol | {subset} J&F: prior | base | SFT | +GRPO | SFT - base | GRPO - previous |",
        "|---|---|---|---|---|---|---|",
    ]
    for protocol, tags in by.items():
        mean = {t: sum(v) / len(v) for t, v in tags.items()}
        base, sft, grpo = (mean.get(t) for t in RUNGS)
        before = sft if sft is not None else base
        cells = [protocol] + [percent(v) for v in (mean.get("prior"), base, sft, grpo)]
        cells.append(percent(None if sft is None or base is None else sft - base))
        cells.append(percent(None if grpo is None or before is None else grpo - before))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def training_mean_box(exp, count: int = 256):
    """The mean target box (fractions of the frame) over the first `count` expressions of
    `exp`'s training split (jaxseg.protocols.scripted.mean_target_box)."""
    from jaxseg.protocols.scripted import mean_target_box

    train = exp.source(exp.config.data.train_split)
    return mean_target_box([train[i] for i in range(min(len(train), count))])


def prior_policy(exp, box):
    """The box prior in `exp`'s evaluation protocol (jaxseg.protocols.scripted.PriorPolicy):
    `box` on the first frame shown, for the held-out samples `exp.evaluate` reads."""
    from jaxseg.protocols.scripted import PriorPolicy

    held = exp.source(exp.config.data.eval_split)
    n = min(len(held), exp.config.eval.max_expressions)
    return PriorPolicy(exp.eval_protocol, [held[i] for i in range(n)], box)


def hard_config(config, root: Path, seed: int):
    """`config` reading a benchmark of generator seed `seed` and difficulty "hard" at
    `root` (only its eval split is read: the train split is kept tiny)."""
    c = copy.deepcopy(config)
    c.data.root = str(root)
    c.data.synth.seed = int(seed)
    c.data.synth.difficulty = "hard"
    c.data.synth.videos = 1
    return c


def evaluate_hard(
    config, run_dir: Path, hard_root: Path, seed: int, tags, *, progress: bool, box=None
):
    """Each of `tags`' checkpoints (in the order init, sft, grpo; "prior": the box prior
    with `box`) of the run in `run_dir` evaluated on the hard benchmark
    (written once under `hard_root`); {tag: summary}, read back when already on disk."""
    from jaxseg.commands.train import ensure_data
    from jaxseg.train.trainer import Experiment

    c = hard_config(config, hard_root, seed)
    ensure_data(c, progress=progress)
    out, exp = {}, None
    for tag in tags:
        path = run_dir / "hard" / "eval" / tag / "summary.json"
        if path.is_file():
            out[tag] = json.loads(path.read_text())
            continue
        if exp is None:  # its model starts as config.model.init: the untrained policy
            exp = Experiment(c, run_dir / "hard", progress=progress, allow_config_change=True)
        if tag == "prior":  # the mean box of the run's own training split
            out[tag] = exp.evaluate(tag, policy=prior_policy(exp, box))
            continue
        # a stage's checkpoint holds every policy parameter: loading one replaces the last
        if tag != "init" and exp.learner.load(tag, exp.model, workdir=run_dir) is None:
            continue
        out[tag] = exp.evaluate(tag)
    return out


def run(args: argparse.Namespace) -> int:
    from jaxseg.commands.train import ensure_data
    from jaxseg.config import load_config
    from jaxseg.train import progress as progress_lib
    from jaxseg.train.trainer import Experiment

    from .demo import _report, train_and_evaluate, with_config_args

    protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]
    unknown = sorted(set(protocols) - set(PROTOCOLS))
    if unknown:
        raise SystemExit(f"jaxseg ladder: unknown protocol(s) {unknown}; choose from {PROTOCOLS}")
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    root = Path(args.workdir)
    progress = not args.no_progress
    say = print if progress_lib.process_index() == 0 else (lambda *a, **k: None)
    held, hard, walls = [], [], {}
    for protocol in protocols:
        for seed in seeds:
            spec = with_config_args(args.config, quick=args.quick, protocol=protocol)
            config = load_config(spec, [*args.set, f"seed={seed}"])
            progress_lib.configure(config)
            run_dir = root / f"{protocol}-seed{seed}"
            say(f"\n=== {protocol}, seed {seed}: {run_dir}")
            t0 = time.perf_counter()
            if args.prior_only:
                if seed != seeds[0]:
                    continue
                ensure_data(config, progress=progress, workdir=run_dir)
                exp = Experiment(config, run_dir, progress=progress, allow_config_change=True)
                summaries = {}
            else:
                exp, summaries = train_and_evaluate(
                    config,
                    run_dir,
                    progress=progress,
                    allow_config_change=args.allow_config_change,
                )
                if progress_lib.process_index() == 0:
                    _report(exp.workdir, config.data.root)
            tags, box = list(summaries), None
            if seed == seeds[0]:  # the box prior, once per protocol (it has no seed)
                box = training_mean_box(exp)
                path = run_dir / "eval" / "prior" / "summary.json"
                prior = (
                    json.loads(path.read_text())
                    if path.is_file()
                    else exp.evaluate("prior", policy=prior_policy(exp, box))
                )
                held.append((protocol, "-", "prior", prior))
                tags = ["prior", *tags]
            held += [(protocol, seed, tag, s) for tag, s in summaries.items()]
            if not args.no_hard:
                got = evaluate_hard(
                    config,
                    run_dir,
                    root / "hard" / "data",
                    args.hard_seed,
                    tags,
                    progress=progress,
                    box=box,
                )
                hard += [(protocol, seed if t != "prior" else "-", t, s) for t, s in got.items()]
            walls[f"{protocol}-seed{seed}"] = time.perf_counter() - t0
    parts = [
        "# The learning ladder",
        f"`jaxseg ladder --config {args.config} --protocols {','.join(protocols)} --seeds "
        f"{','.join(map(str, seeds))}"
        + (" --quick" if args.quick else "")
        + (" --prior-only" if args.prior_only else "")
        + "`",
        "## Held-out split (" + str(config.data.eval_split) + ")",
        ladder_table(held),
        seed_means(held),
    ]
    if hard:
        parts += [
            f"## Hard benchmark (generator seed {args.hard_seed}, difficulty hard)",
            ladder_table(hard),
            seed_means(hard),
        ]
    parts += (
        []
        if args.prior_only
        else [
            "## Runs",
            "\n".join(
                f"- [{name}]({name}/report.md): {wall:.0f} s this invocation"
                for name, wall in walls.items()
            ),
        ]
    )
    text = "\n\n".join(parts) + "\n"
    if progress_lib.process_index() == 0:
        root.mkdir(parents=True, exist_ok=True)
        (root / "ladder.md").write_text(text)
    say("\n" + text)
    say(f"wrote {root / 'ladder.md'}")
    return 0
