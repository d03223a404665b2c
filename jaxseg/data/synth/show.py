"""An example page: frames with the target masks of each query overlaid, and the query text.

It reads the *written* ReVOS files (JPEGs, meta_expressions, mask_dict), so what it shows is
what a reader of the benchmark gets; the sidecar, if present, adds the event list so a person
can check each answer against what happens.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pycocotools.mask as mask_utils
from PIL import Image

from jaxseg.data.synth.writer import meta_name, sidecar_name

_TYPE_NAMES = {0: "referring", 1: "reasoning", 2: "null"}


def _decode(rle: dict[str, Any] | None, h: int, w: int) -> np.ndarray:
    if not rle:
        return np.zeros((h, w), bool)
    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)


def _event_line(e: dict[str, Any]) -> str:
    objs = "-".join(f"#{k}" for k in e["objects"])
    extra = f"->{e['to']}" if "to" in e else ""
    span = f"..{e['end']}" if "end" in e else ""
    return f"{e['type']} {objs}{extra} @{e['frame']}{span}"


def _first_seen(obj: dict[str, Any], key: str) -> str:
    """An attribute when the object is first in view (it may change later: see events)."""
    for value, in_frame in zip(obj[key], obj["in_frame"], strict=True):
        if in_frame:
            return value
    return obj[key][0]


def _pairs(lines: list[str]) -> list[str]:
    return [
        "  ".join(f"{x:<26}" for x in lines[k : k + 2]).rstrip() for k in range(0, len(lines), 2)
    ]


def pick_examples(meta: dict[str, Any], rows: int, per_video: int = 3) -> list[tuple[str, str]]:
    """(video, exp_id) pairs: a few per video, cycling the type ids so every kind shows."""
    picked: list[tuple[str, str]] = []
    for video, info in meta.items():
        exps = sorted(info["expressions"].items(), key=lambda kv: kv[1]["type_id"])
        by_type: dict[int, list[str]] = {}
        for k, e in exps:
            by_type.setdefault(e["type_id"], []).append(k)
        order = []
        while any(by_type.values()) and len(order) < per_video:
            for t in sorted(by_type):
                if by_type[t] and len(order) < per_video:
                    order.append(by_type[t].pop(0))
        picked.extend((video, k) for k in order)
        if len(picked) >= rows:
            break
    return picked[:rows]


LEGEND = (
    "Legend: frames show the answer to the row's query bright, outlined in white; everything "
    "else is dimmed.  t=N: frame index; 'key': the annotated keyframe; '(none)': no target "
    "in that frame.\nLeft column: video, expression id, [query type], the query, the answer's "
    "object ids, the scene's objects (#id size colour shape) and its events."
)


def render_example_page(
    data: str | Path, out: str | Path, *, split: str = "valid", rows: int = 12, cols: int = 6
) -> Path:
    """Write a PNG grid: one query per row, `cols` uniformly spaced frames per row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data, out = Path(data), Path(out)
    meta_path = data / meta_name(split)
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} does not exist (is {data} a synthetic benchmark?)")
    meta = json.loads(meta_path.read_text())["videos"]
    mask_dict = json.loads((data / "mask_dict.json").read_text())
    side_path = data / sidecar_name(split)
    side = json.loads(side_path.read_text())["videos"] if side_path.is_file() else {}

    examples = pick_examples(meta, rows)
    fig, axes = plt.subplots(
        len(examples),
        cols + 1,
        figsize=(1.7 * cols + 5.0, 1.85 * len(examples)),
        gridspec_kw={"width_ratios": [3.2] + [1] * cols},
        squeeze=False,
    )
    for row, (video, exp_id) in enumerate(examples):
        info = meta[video]
        exp = info["expressions"][exp_id]
        names = info["frames"]
        T, H, W = len(names), int(info["height"]), int(info["width"])
        shown = np.unique(np.linspace(0, T - 1, cols).round().astype(int))
        sc = side.get(video, {}).get("expressions", {}).get(exp_id, {})
        key = sc.get("keyframe")
        if key is not None and key not in shown:
            shown[np.argmin(np.abs(shown - key))] = key
        graph = side.get(video, {}).get("graph", {})
        objects = [
            f"#{o['obj_id']} {_first_seen(o, 'size')} {_first_seen(o, 'colour')} {o['shape']}"
            for o in graph.get("objects", [])
        ]
        events = [_event_line(e) for e in graph.get("events", [])]
        label = (
            f"{video}  exp {exp_id}  [{_TYPE_NAMES.get(exp['type_id'], exp['type_id'])}]\n"
            f'"{exp["exp"]}"\n'
            f"answer: obj {exp['obj_id'] or 'none (no target)'}\n"
            + "\n".join(_pairs(objects))
            + "\n"
            + "\n".join(_pairs(events[:10]))
        )
        ax = axes[row, 0]
        ax.axis("off")
        ax.text(0, 1, label, va="top", ha="left", fontsize=6.5, family="monospace", wrap=True)
        for c, t in enumerate(shown):
            frame = np.asarray(Image.open(data / "JPEGImages" / video / f"{names[t]}.jpg"))
            target = np.zeros((H, W), bool)
            for aid in exp["anno_id"]:
                target |= _decode(mask_dict[str(aid)][t], H, W)
            shade = frame.astype(np.float64)
            shade[~target] *= 0.45  # dim everything that is not the answer
            ax = axes[row, c + 1]
            ax.imshow(shade.astype(np.uint8), interpolation="nearest")
            if target.any():
                ax.contour(target, levels=[0.5], colors="white", linewidths=0.8)
            mark = " key" if t == key else ""
            ax.set_title(f"t={t}{mark}" + ("" if target.any() else "  (none)"), fontsize=7)
            ax.axis("off")
        for c in range(len(shown) + 1, cols + 1):
            axes[row, c].axis("off")
    fig.text(0.005, 0.999, LEGEND, va="top", ha="left", fontsize=7, family="monospace")
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.42 / fig.get_figheight()))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
