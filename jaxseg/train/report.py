"""The run report: a markdown page with the learning table, curves, overlays and traces.

Everything is read back from the run directory (metrics.jsonl, eval/<tag>/summary.json,
prediction PNGs, traces.jsonl), so a report can be rebuilt for any run, including one
that was interrupted and resumed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .metrics import read_metrics

TAGS = ("init", "sft", "grpo")
TAG_NAMES = {"init": "untrained", "sft": "SFT", "grpo": "SFT+GRPO"}


def load_summaries(workdir: Path) -> dict[str, dict[str, Any]]:
    out = {}
    for tag in TAGS:
        path = workdir / "eval" / tag / "summary.json"
        if path.is_file():
            out[tag] = json.loads(path.read_text())
    return out


def learning_table(summaries: dict[str, dict[str, Any]]) -> str:
    """Markdown: one row per stage, J&F / J / F / R overall and J&F per subset (x100)."""
    subsets = sorted({s for v in summaries.values() for s in v["subsets"]})
    head = "| policy | J&F | J | F | R | " + " | ".join(f"J&F {s}" for s in subsets) + " | reward |"
    rows = [head, "|" + "---|" * (6 + len(subsets))]
    for tag, summary in summaries.items():
        o = summary["overall"]
        cells = [TAG_NAMES.get(tag, tag)] + [percent(o.get(m)) for m in ("JF", "J", "F", "R")]
        cells += [percent(summary["subsets"].get(s, {}).get("JF")) for s in subsets]
        cells.append(f"{summary.get('reward', {}).get('reward/total', float('nan')):.3f}")
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def percent(x) -> str:
    """jaxseg.eval summaries are already x100."""
    return "-" if x is None or x != x else f"{float(x):.1f}"


def plot_curves(workdir: Path, out: Path) -> Path | None:
    """SFT loss; GRPO mean reward, J of rollouts and KL to the SFT policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    pre = workdir / "pretrain" / "metrics.jsonl"
    sft = workdir / "sft" / "metrics.jsonl"
    grpo = workdir / "grpo" / "metrics.jsonl"
    if pre.is_file():
        panels.append(("grounding pretraining loss", read_metrics(pre, "train"), "loss"))
    if sft.is_file():
        panels.append(("SFT loss", read_metrics(sft, "train"), "loss"))
    if grpo.is_file():
        recs = read_metrics(grpo, "train")
        panels += [
            ("GRPO mean reward", recs, "reward/mean"),
            ("GRPO rollout J", recs, "J"),
            ("GRPO KL (k3) to SFT", recs, "kl_k3"),
        ]
        evals = read_metrics(grpo, "eval")
        if evals:
            panels.append(("held-out J&F during GRPO", evals, "JF"))
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3))
    axes = np.atleast_1d(axes)
    for ax, (title, recs, key) in zip(axes, panels):
        xs = [r["step"] for r in recs if r.get(key) is not None]
        ys = [r[key] for r in recs if r.get(key) is not None]
        ax.plot(xs, ys, lw=1, marker="o" if len(ys) < 12 else None, ms=3)
        if len(ys) >= 5:
            k = max(len(ys) // 10, 2)
            smooth = np.convolve(ys, np.ones(k) / k, mode="valid")
            ax.plot(xs[k - 1 :], smooth, lw=2)
        ax.set_title(title)
        ax.set_xlabel("step")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def plot_overlays(workdir: Path, data_root: Path, tag: str, out, n: int = 4) -> Path | None:
    """A few held-out expressions, one row each: three frames (the keyframe among them),
    each as ground truth | prediction side by side (jaxseg.viz.overlay: contours in a colour
    no object uses, the answer's boxes/points on the keyframe, a caption with the whole
    query, frame index, keyframe marker, predicted box or "no target"). `out`: a path or a
    binary file object; returns it."""
    from PIL import Image

    from jaxseg.viz.overlay import (
        Answer,
        annotate_frame,
        pick_mark_colour,
        pick_positions,
        scale_for,
        tile,
    )

    traces_path = workdir / "eval" / tag / "traces.jsonl"
    if not traces_path.is_file():
        return None
    traces = [json.loads(line) for line in traces_path.read_text().splitlines()][:n]
    if not traces:
        return None
    from jaxseg.data.readers import read_dataset

    index = {r.key: r for r in read_dataset("revos", data_root, "valid")}
    cols, tiles = 3, []
    for trace in traces:
        record = index.get(trace["sample_key"])
        if record is None:
            continue
        answer = Answer.from_json(trace.get("final"))
        ids = [int(i) for i in record.frame_ids]
        key_pos = ids.index(answer.keyframe) if answer.keyframe in ids else None
        positions = pick_positions(record.num_frames, key_pos, cols)
        frames = [np.asarray(Image.open(record.frame_paths[p]).convert("RGB")) for p in positions]
        gt = record.target_masks(list(positions))
        pred_dir = workdir / "eval" / tag / "pred" / record.video_id / record.exp_id
        colour = pick_mark_colour(np.stack(frames))
        scale = scale_for(*frames[0].shape[:2], target=160)
        for p, frame, g in zip(positions, frames, gt):
            pred_path = pred_dir / f"{record.frame_names[p]}.png"
            pm = np.asarray(Image.open(pred_path)) > 0 if pred_path.is_file() else None
            tiles.append(
                annotate_frame(
                    frame,
                    pm,
                    gt_mask=g,
                    query=trace["query"],
                    frame_index=int(record.frame_ids[p]),
                    num_frames=record.num_frames,
                    answer=answer,
                    colour=colour,
                    scale=scale,
                )
            )
    if not tiles:
        return None
    Image.fromarray(tile(tiles, cols)).save(out, format="PNG")
    return out


def example_traces(workdir: Path, tag: str, n: int = 3) -> str:
    path = workdir / "eval" / tag / "traces.jsonl"
    if not path.is_file():
        return ""
    blocks = []
    for line in path.read_text().splitlines()[:n]:
        t = json.loads(line)
        turns = "\n".join(f"[{x['step']}] {x['response']}" for x in t["turns"])
        blocks.append(
            f'**{t["sample_key"]}** — "{t["query"]}" — reward {t["reward"].get("total", 0):.2f}, '
            f"J {t['metrics']['J']:.2f}\n\n```\n{turns}\n```"
        )
    return "\n\n".join(blocks)


def write_report(workdir: str | Path, data_root: str | Path) -> Path:
    workdir, data_root = Path(workdir), Path(data_root)
    summaries = load_summaries(workdir)
    parts = ["# jaxseg run report", f"run directory: `{workdir}`", ""]
    config = workdir / "config.json"
    if config.is_file():
        cfg = json.loads(config.read_text())
        parts.append(
            f"protocol `{cfg['protocol']['name']}`, model `{cfg['model']['size']}`, "
            f"backend `{cfg['segmenter']['backend']}`, seed {cfg['seed']}"
        )
    parts += ["", "## Held-out results (x100)", ""]
    parts.append(learning_table(summaries) if summaries else "no evaluation yet")
    if summaries:
        note = next(iter(summaries.values())).get("note", "")
        parts += ["", f"_{note}_"]
    grounding = workdir / "pretrain" / "grounding.json"
    if grounding.is_file():
        g = json.loads(grounding.read_text())
        parts += [
            "",
            "Stage 0 (single-frame grounding pretraining), held-out frames: box IoU "
            f"{g['box_iou']:.3f} (IoU > 0.5 on {100 * g['iou>0.5']:.0f}%, parsed "
            f"{100 * g['parse_ok']:.0f}%); always answering the mean box: {g['mean_box_iou']:.3f}.",
        ]
    curves = plot_curves(workdir, workdir / "curves.png")
    if curves:
        parts += ["", "## Training curves", "", "![curves](curves.png)"]
    last = next((t for t in reversed(TAGS) if t in summaries), None)
    if last:
        overlay = plot_overlays(workdir, data_root, last, workdir / f"overlays_{last}.png")
        if overlay:
            parts += ["", "## Masks on held-out videos", "", f"![overlays](overlays_{last}.png)"]
        parts += ["", f"## Example reasoning traces ({TAG_NAMES.get(last, last)})", ""]
        parts.append(example_traces(workdir, last))
    out = workdir / "report.md"
    out.write_text("\n".join(parts) + "\n")
    return out
