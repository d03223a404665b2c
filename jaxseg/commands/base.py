"""`jaxseg base`: train (or resume) the grounded base and ship it as an HF checkpoint.

    jaxseg base                      # = make base: resume runs/base, ship jaxseg/assets/qwen3_vl_tiny
    jaxseg base --steps 0            # no training: evaluate and ship what is there

1. the `pretrain` stage of `--config` (default `synthetic_base`: a tiny Qwen3-VL on the base
   curriculum, jaxseg.train.base_tasks), resumed from its last checkpoint, up to `--steps`
   (0: no training, evaluate and ship the newest checkpoint);
2. the held-out evaluation of every base task next to its trivial prior, in the shipped dtype
   (float16 by default) as well as in training precision;
3. the export (safetensors + config + processor + generation_config + a model card with the
   recipe command, data seed, steps, wall time and the numbers), written atomically into
   `--out`, only when its grounding beats the base already there, both measured now on the
   same held-out items (`ship_decision`; every committed version stays in git history: ship
   only improvements), or with `--force`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .train import add_common_arguments

CARD_FILE = "README.md"
SCORES_FILE = "base_scores.json"
CHECK_ITEMS = 16  # the small fixed held-out set the tests re-answer with the shipped weights


def check_set(exp, count: int = CHECK_ITEMS) -> dict:
    """The greedy answers of `exp.model` on the first `count` held-out box items and their
    box IoU: what a test re-computes from the shipped files (a scrambled or mis-mapped weight
    changes the answers)."""
    from jaxseg.sampling.filters import SamplingParams
    from jaxseg.train import base_tasks

    b = exp.config.pretrain.base
    items = base_tasks.eval_items(int(b.seed), b.eval_split, count, "box")
    policy = exp.policy(sampling=SamplingParams(temperature=0.0), max_new_tokens=64, seed=0)
    texts = policy.respond(policy.start([x.conversation(with_answer=False) for x in items]))
    return {
        "seed": int(b.seed),
        "split": b.eval_split,
        "count": count,
        "texts": texts,
        "box_iou": base_tasks.score("box", texts, items)["iou"],
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="synthetic_base", help="config spec (pretrain stage)")
    parser.add_argument("--workdir", default="runs/base", help="the base's run directory")
    parser.add_argument(
        "--out",
        default=str(Path(__file__).resolve().parents[1] / "assets" / "qwen3_vl_tiny"),
        help="where to ship it (default: the package's jaxseg/assets/qwen3_vl_tiny)",
    )
    parser.add_argument(
        "--steps", type=int, default=None, help="train up to this step (0: ship what is there)"
    )
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float16")
    parser.add_argument(
        "--force", action="store_true", help="ship even if the shipped base scores higher"
    )
    parser.add_argument("--eval-items", type=int, default=None, help="held-out items per task")
    parser.add_argument(
        "--min-gain",
        type=float,
        default=MIN_GAIN,
        help=f"mean IoU of box and frames a base must add to replace the shipped one ({MIN_GAIN})",
    )
    add_common_arguments(parser)


def wall_time(metrics_path: Path, gap: float = 120.0) -> float:
    """Seconds of training in `metrics.jsonl`: the sum of gaps between consecutive train
    records, gaps over `gap` s (the run was stopped and resumed) left out."""
    times = []
    for line in metrics_path.read_text().splitlines():
        row = json.loads(line)
        if row.get("kind") == "train" and "time" in row:
            times.append(float(row["time"]))
    return float(sum(b - a for a, b in zip(times, times[1:]) if 0 < b - a < gap))


def recipe_changes(workdir: Path) -> list[dict]:
    """The run's config changes (`<workdir>/config_history/`, each written at a resume with
    `--allow-config-change`): [{"step": the first step trained after it (None if none was),
    "changes": ["key: old -> new", ...]}], oldest first."""
    from jaxseg.train.runconfig import HISTORY

    history = sorted((workdir / HISTORY).glob("*.json")) if (workdir / HISTORY).is_dir() else []
    if not history:
        return []
    times = []
    metrics = workdir / "pretrain" / "metrics.jsonl"
    if metrics.is_file():
        for line in metrics.read_text().splitlines():
            row = json.loads(line)
            if row.get("kind") == "train" and "time" in row:
                times.append((float(row["time"]), int(row["step"])))
    out = []
    for path in history:
        entry = json.loads(path.read_text())
        after = [step for t, step in times if t >= float(entry["time"])]
        out.append({"step": min(after) if after else None, "changes": list(entry["changes"])})
    return out


def card(info: dict) -> str:
    s = info["scores"]
    box = s["box"]
    rows = []
    for task, row in s.items():
        if task == "absent":
            rows.append(f"| absent | answers no target on {100 * row['iou']:.0f}% | - |")
        elif "iou" in row:
            prior = row.get("prior_mean_box_iou")
            over = f", IoU>0.5 on {100 * row['iou>0.5']:.0f}%" if "iou>0.5" in row else ""
            rows.append(
                f"| {task} | IoU {row['iou']:.3f}{over} | "
                + (f"mean box IoU {prior:.3f} |" if prior is not None else "- |")
            )
        else:
            rows.append(
                f"| {task} | accuracy {row['accuracy']:.3f} | always "
                f"'{row['majority_answer']}': {row['prior_majority']:.3f} |"
            )
    return "\n".join(
        [
            "---",
            "library_name: transformers",
            "pipeline_tag: image-text-to-text",
            "tags: [jaxseg, qwen3_vl, synthetic, grounding]",
            "---",
            "",
            "# jaxseg grounded base: tiny Qwen3-VL, pretrained from scratch on the synthetic world",
            "",
            "The base the demo and tests start from (the seeds start from a pretrained Qwen-VL "
            "that already grounds; none can be downloaded here, so this one is built and shipped "
            "in the repository). Architecture: transformers' `Qwen3VLForConditionalGeneration` "
            f"({info['params']:,} parameters, {info['dtype']}).",
            "",
            f"- recipe: `{info['command']}`",
            f"- config: `{info['config']}`; data: `jaxseg.data.synth` generator seed "
            f"{info['data_seed']}, split `{info['train_split']}` (fresh videos every step; "
            f"held-out: split `{info['eval_split']}`, never trained on)",
            f"- steps: {info['steps']} x batch {info['batch_size']}; training wall time "
            f"{info['wall_time_s'] / 3600:.2f} h on {info['machine']}",
            *_history_lines(info.get("recipe_changes", [])),
            "",
            "Held-out scores (greedy decoding, "
            f"{info['eval_items']} items per task, in {info['dtype']}; "
            f"{info['train_dtype']}: box IoU {info['train_precision_box_iou']:.3f}):",
            "",
            "| task | base | trivial prior |",
            "|---|---|---|",
            *rows,
            "",
            f"Referring grounding: box IoU {box['iou']:.3f} (IoU > 0.5 on "
            f"{100 * box['iou>0.5']:.0f}% of frames) vs {box['prior_mean_box_iou']:.3f} for "
            "always answering the mean box.",
            "",
        ]
    )


def _history_lines(changes: list[dict]) -> list[str]:
    if not changes:
        return []
    lines = [
        f"- the recipe changed {len(changes)} times during this run (each at a resume; "
        "`config_history/` of the run), so `make base` from scratch trains the final recipe "
        "from step 0, which this run did not:"
    ]
    for c in changes:
        where = f"from step {c['step']}" if c["step"] is not None else "after its last step"
        lines.append(f"  - {where}: " + "; ".join(f"`{x}`" for x in c["changes"]))
    return lines


# what the protocols ask of a base: a box in one frame (`box`; RCoT-Seg's and ReVSeg's
# keyframe) and in one of several labelled frames (`frames`; Veason-R1's and VideoSEG-O3's)
SHIP_TASKS = ("box", "frames")


def grounding(scores: dict) -> float:
    """The mean held-out IoU over the `SHIP_TASKS` that `scores` (base_eval's) has."""
    ious = [float(scores[t]["iou"]) for t in SHIP_TASKS if t in scores]
    if not ious:
        raise ValueError(f"no ship task ({', '.join(SHIP_TASKS)}) among {sorted(scores)}")
    return sum(ious) / len(ious)


# a new base must beat the shipped one by this much mean IoU: a held-out IoU over 128 items
# moves by ~0.02 between checkpoints of one plateau, and every shipped copy stays in git
MIN_GAIN = 0.01


def ship_decision(
    candidate: dict, shipped: dict | None, min_gain: float = MIN_GAIN
) -> tuple[bool, str]:
    """Whether a base whose held-out scores are `candidate` replaces one scoring `shipped`
    (None: nothing shipped yet), and why: its `grounding` must be higher by more than
    `min_gain` on the same tasks, measured on the same items."""
    if shipped is None:
        return True, "nothing shipped yet"
    tasks = [t for t in SHIP_TASKS if t in candidate and t in shipped]
    new = grounding({t: candidate[t] for t in tasks})
    old = grounding({t: shipped[t] for t in tasks})
    detail = ", ".join(f"{t} {candidate[t]['iou']:.3f} vs {shipped[t]['iou']:.3f}" for t in tasks)
    if new > old + min_gain:
        return True, f"mean IoU {new:.4f} beats the shipped base's {old:.4f} ({detail})"
    return False, (
        f"mean IoU {new:.4f} does not beat the shipped base's {old:.4f} by more than "
        f"{min_gain} ({detail})"
    )


def run(args: argparse.Namespace) -> int:
    import platform

    import jax.numpy as jnp
    from flax import nnx

    from jaxseg.config import load_config

    from .export import _cast, generation_config, write_export
    from .train import run_stages

    config = load_config(args.config, args.set)
    if args.steps is not None and args.steps > 0:
        config.pretrain.steps = args.steps
    if args.eval_items:
        config.pretrain.eval_items = args.eval_items
    workdir = Path(args.workdir)
    if args.steps != 0:
        run_stages(
            config,
            workdir,
            ["pretrain"],
            progress=not args.no_progress,
            allow_config_change=True,  # --steps grows the run: its config records each change
        )
    from jaxseg.train.trainer import Experiment

    exp = Experiment(config, workdir, progress=False, allow_config_change=True)
    saved = exp.load_stage("pretrain")
    if saved is None:
        raise SystemExit(f"{workdir}: no pretrain checkpoint to ship (train first)")
    step = int(saved) + 1  # steps trained into the checkpoint's weights
    train_dtype = str(jnp.dtype(config.model.dtype))
    full = exp.base_eval()
    exp.model = _cast(exp.model, args.dtype)
    shipped = exp.base_eval()
    print(json.dumps({"train_precision": full, args.dtype: shipped}, indent=2))
    out = Path(args.out)
    before = None
    if (out / "config.json").is_file():  # the shipped base, on the same items, same dtype
        from jaxseg.models.family import load_pretrained

        candidate = exp.model
        exp.model = load_pretrained(out, dtype=jnp.dtype(args.dtype))
        before = exp.base_eval(
            tasks=[t for t in SHIP_TASKS if t in config.pretrain.base.eval_tasks]
        )
        exp.model = candidate
    ship, why = ship_decision(shipped, before, args.min_gain)
    if not ship and not args.force:
        print(f"not shipped: {why} ({out}); --force ships it anyway")
        return 0
    print(f"shipping: {why}")
    b = config.pretrain.base
    info = {
        "command": "make base"
        if args.config == "synthetic_base" and args.workdir == "runs/base"
        else f"jaxseg base --config {args.config} --workdir {args.workdir}",
        "config": args.config,
        "data_seed": int(b.seed),
        "train_split": b.train_split,
        "eval_split": b.eval_split,
        "steps": step,
        "batch_size": int(config.pretrain.batch_size),
        "wall_time_s": wall_time(workdir / "pretrain" / "metrics.jsonl"),
        "recipe_changes": recipe_changes(workdir),
        "machine": f"{platform.machine()} CPU",
        "eval_items": int(config.pretrain.eval_items),
        "dtype": args.dtype,
        "train_dtype": train_dtype,
        "train_precision_box_iou": full["box"]["iou"],
        "params": sum(v.size for _, v in nnx.to_flat_state(nnx.state(exp.model, nnx.Param))),
        "scores": shipped,
        "check_set": check_set(exp),
    }
    write_export(
        exp.model,
        out,
        run_dir=workdir,
        reference_dir=workdir / "processor",
        overwrite=True,
        generation=generation_config(exp),
        card=card(info),
    )
    (out / SCORES_FILE).write_text(json.dumps(info, indent=2) + "\n")
    print(f"shipped the step-{step} base to {out} (box IoU {shipped['box']['iou']:.3f})")
    print(f"wrote {out}")
    return 0
