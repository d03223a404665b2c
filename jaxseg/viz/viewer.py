"""The HTML trace viewer: one self-contained page per run (`jaxseg view RUN`).

For every evaluated stage of a run (``eval/<stage>/traces.jsonl``), each episode shows: the
query and its subset, each reward term and the metrics; every turn's observation and response
text, parse status and parsed action, with the frames the policy was shown in that turn
(the keyframe it was given outlined); the final answer (keyframe, boxes, points, or "no
target") drawn on the keyframe as ground truth | prediction; and the masks over the whole
video (ground truth | prediction, captioned; jaxseg.viz.overlay) as a looping VP9 WebM with
controls (a tenth of a GIF's size), its first frame as the poster.

Frames and ground truth come from the run's benchmark (``data.root`` in its config.json, or
``data_root``), predictions from ``eval/<stage>/pred``. Every picture is inlined as a data:
URI and the style sheet is in the page, so the file can be mailed or opened offline. A small
script records how many pictures and videos decoded (``<body data-images-loaded=...
data-videos-ready=...>``), which the browser test reads.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .overlay import Answer, annotate_frame, annotate_video, pick_mark_colour, scale_for
from .video import png_data_uri, webm_data_uri

STAGES = ("init", "pretrain", "sft", "grpo")
STAGE_NAMES = {"init": "untrained", "pretrain": "grounding", "sft": "SFT", "grpo": "SFT+GRPO"}
TYPE_NAMES = {0: "referring", 1: "reasoning", 2: "no target"}

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0;
       background: #f4f4f6; color: #1d1d22; }
header { background: #1d1d22; color: #eee; padding: 14px 22px; }
header h1 { margin: 0 0 4px; font-size: 20px; }
header a { color: #ffc400; margin-right: 14px; }
main { padding: 10px 22px 40px; }
h2 { margin: 26px 0 8px; border-bottom: 2px solid #1d1d22; }
.episode { background: #fff; border: 1px solid #d6d6dc; border-radius: 6px; margin: 14px 0;
           padding: 12px 16px; }
.episode h3 { margin: 0 0 6px; font-size: 16px; }
.query { font-size: 16px; font-weight: 600; }
.tag { display: inline-block; background: #e7e7ee; border-radius: 3px; padding: 0 6px;
       margin-right: 6px; font-size: 12px; }
.tag.bad { background: #ffd9d6; } .tag.good { background: #d7f5dc; }
table.terms { border-collapse: collapse; margin: 6px 0; }
table.terms td, table.terms th { border: 1px solid #d6d6dc; padding: 2px 8px; text-align: right;
                                 font-variant-numeric: tabular-nums; }
table.terms th { background: #f0f0f4; }
.turn { border-left: 4px solid #8a8aa0; padding: 4px 10px; margin: 10px 0; }
.turn .frames { display: flex; flex-wrap: wrap; gap: 4px; margin: 6px 0; }
.thumb { text-align: center; font-size: 11px; color: #555; }
.thumb img { display: block; width: 96px; image-rendering: pixelated; border: 2px solid #ccc; }
.thumb.key img { border-color: #ffc400; }
pre { white-space: pre-wrap; word-break: break-word; background: #f7f7fa; padding: 6px 8px;
      margin: 4px 0; border-radius: 4px; font-size: 12.5px; max-height: 24em; overflow: auto; }
details summary { cursor: pointer; color: #555; }
.pictures { display: flex; flex-wrap: wrap; gap: 14px; align-items: flex-start; }
.pictures figure { margin: 0; }
.pictures figcaption { font-size: 12px; color: #555; }
.pictures img, .pictures video { image-rendering: pixelated; max-width: 100%; }
.note { color: #8a1c1c; }
"""

SCRIPT = """
(function () {
  var imgs = Array.prototype.slice.call(document.images);
  var videos = Array.prototype.slice.call(document.getElementsByTagName("video"));
  function count() {
    var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
    var ready = videos.filter(function (v) { return v.readyState >= 2 && v.videoWidth > 0; });
    document.body.setAttribute("data-images-loaded", ok);
    document.body.setAttribute("data-images-total", imgs.length);
    document.body.setAttribute("data-videos-ready", ready.length);
    document.body.setAttribute("data-videos-total", videos.length);
  }
  imgs.forEach(function (i) { i.addEventListener("load", count); });
  videos.forEach(function (v) { v.addEventListener("loadeddata", count); });
  window.addEventListener("load", count);
  count();
})();
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _num(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return _e(value)
    if isinstance(value, int | float):
        return f"{value:.3f}" if isinstance(value, float) else str(value)
    return _e(value)


def find_data_root(run_dir: Path, config: dict[str, Any], data_root: str | Path | None):
    """The run's benchmark: `data_root`, else config data.root as given, from the run's
    parent folders (a relative root is relative to where the run was started)."""
    if data_root is not None:
        return Path(data_root) if Path(data_root).is_dir() else None
    root = (config.get("data") or {}).get("root")
    if not root:
        return None
    root = Path(str(root).replace("{workdir}", str(run_dir)))  # a config saved unresolved
    bases = [Path()] if root.is_absolute() else [Path(), run_dir, *run_dir.resolve().parents]
    return next((b / root for b in bases if (b / root).is_dir()), None)


def _terms_table(terms: dict[str, Any], title: str) -> str:
    if not terms:
        return ""
    head = "".join(f"<th>{_e(k)}</th>" for k in terms)
    cells = "".join(f"<td>{_num(v)}</td>" for v in terms.values())
    return (
        f'<table class="terms"><tr><th style="text-align:left">{_e(title)}</th>{head}</tr>'
        f"<tr><td></td>{cells}</tr></table>"
    )


class _Frames:
    """A video's frames, read once, and their thumbnails, encoded once (several expressions
    and stages share a video)."""

    def __init__(self, paths):
        from PIL import Image

        self.frames = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])
        self.colour = pick_mark_colour(self.frames)
        self._thumbs: dict[int, str] = {}

    def thumb(self, pos: int) -> str:
        if pos not in self._thumbs:
            self._thumbs[pos] = png_data_uri(self.frames[pos])
        return self._thumbs[pos]


class _Video:
    """One record's frames, ground truth and predicted masks."""

    def __init__(self, record, pred_dir: Path, frames: _Frames):
        from PIL import Image

        self.record = record
        self.ids = [int(i) for i in record.frame_ids]
        self.shared = frames
        self.frames = frames.frames
        self.gt = np.asarray(record.target_masks(list(range(record.num_frames))), bool)
        pred = []
        for name in record.frame_names:
            path = pred_dir / f"{name}.png"
            pred.append(np.asarray(Image.open(path)) > 0 if path.is_file() else None)
        self.pred = (
            None if any(p is None for p in pred) else np.stack([p.astype(bool) for p in pred])
        )
        self.colour = frames.colour

    def position(self, frame_id: int | None) -> int | None:
        if frame_id is None:
            return None
        return self.ids.index(int(frame_id)) if int(frame_id) in self.ids else None


def _turn_html(turn: dict[str, Any], video: _Video | None) -> str:
    info = turn.get("policy_info") or {}
    status = turn.get("parse_status", "?")
    tags = [
        f'<span class="tag">turn {_e(turn.get("index"))}: {_e(turn.get("step"))}</span>',
        f'<span class="tag {"good" if status == "ok" else "bad"}">parse {_e(status)}</span>',
    ]
    if info.get("truncated"):
        tags.append('<span class="tag bad">cut at the token limit</span>')
    parts = [f'<div class="turn">{"".join(tags)}']
    shown = turn.get("frames_shown") or []
    key_shown = turn.get("keyframe_shown")
    if shown:
        thumbs = []
        for fid in shown:
            pos = video.position(fid) if video is not None else None
            if pos is None:
                thumbs.append(f'<div class="thumb">frame {_e(fid)}<br>(not found)</div>')
                continue
            key = " key" if key_shown is not None and int(key_shown) == int(fid) else ""
            label = f"frame {fid}" + (" (keyframe given)" if key else "")
            thumbs.append(
                f'<div class="thumb{key}"><img alt="{_e(label)}" '
                f'src="{video.shared.thumb(pos)}">{_e(label)}</div>'
            )
        parts.append(
            f"<div>frames shown ({len(shown)}):</div>"
            + f'<div class="frames">{"".join(thumbs)}</div>'
        )
    if turn.get("observation"):
        parts.append(
            f"<details><summary>observation (text of the prompt)</summary>"
            f"<pre>{_e(turn['observation'])}</pre></details>"
        )
    response = turn.get("response", "")
    if response.strip():
        parts.append(f"<div>response:</div><pre>{_e(response)}</pre>")
    else:  # an untrained policy often emits only newlines/spaces: say so, do not show a void
        parts.append(f"<div>response: <i>only whitespace ({len(response)} characters)</i></div>")
    if turn.get("action"):
        parts.append(f"<div>parsed action: <code>{_e(json.dumps(turn['action']))}</code></div>")
    parts.append(_terms_table(turn.get("reward") or {}, "turn reward"))
    parts.append("</div>")
    return "".join(parts)


def _pictures_html(trace: dict[str, Any], video: _Video, max_frames: int, fps: float) -> str:
    answer = Answer.from_json(trace.get("final"))
    scale = scale_for(*video.frames.shape[1:3], target=200)
    figures = []
    key_pos = video.position(answer.keyframe)
    if key_pos is not None:
        pred = None if video.pred is None else video.pred[key_pos]
        still = annotate_frame(
            video.frames[key_pos],
            pred,
            gt_mask=video.gt[key_pos],
            query=trace.get("query", ""),
            frame_index=video.ids[key_pos],
            num_frames=len(video.ids),
            answer=answer,
            colour=video.colour,
            scale=scale,
        )
        figures.append(
            f'<figure><img alt="keyframe" src="{png_data_uri(still)}">'
            "<figcaption>the answer on its keyframe: ground truth | prediction "
            "(boxes and points as answered)</figcaption></figure>"
        )
    keep = np.unique(np.linspace(0, len(video.ids) - 1, min(max_frames, len(video.ids))).round())
    keep = keep.astype(int)
    if key_pos is not None and key_pos not in keep:
        keep = np.sort(np.append(keep, key_pos))
    moving = annotate_video(
        video.frames[keep],
        None if video.pred is None else video.pred[keep],
        gt_masks=video.gt[keep],
        query=trace.get("query", ""),
        frame_ids=[video.ids[k] for k in keep],
        answer=answer,
    )
    figures.append(
        f'<figure><video autoplay loop muted playsinline controls width="{moving.shape[2]}" '
        f'poster="{png_data_uri(moving[0])}" src="{webm_data_uri(moving, fps)}"></video>'
        f"<figcaption>masks over the video ({len(keep)} of {len(video.ids)} frames; pause "
        "and scrub to step): ground truth | prediction</figcaption></figure>"
    )
    if video.pred is None:
        figures.append('<p class="note">no predicted masks found for this episode</p>')
    return f'<div class="pictures">{"".join(figures)}</div>'


def _episode_html(
    trace: dict[str, Any], record, video: _Video | None, anchor: str, max_frames: int, fps: float
) -> str:
    reward = dict(trace.get("reward") or {})
    total = reward.get("total")
    metrics = trace.get("metrics") or {}
    answer = Answer.from_json(trace.get("final"))
    subset = TYPE_NAMES.get(getattr(record, "type_id", None), "") if record is not None else ""
    tags = [f'<span class="tag">{_e(trace.get("protocol", ""))}</span>']
    if subset:
        tags.append(f'<span class="tag">{_e(subset)}</span>')
    if total is not None:
        tags.append(f'<span class="tag">reward {_num(total)}</span>')
    if "J" in metrics:
        tags.append(f'<span class="tag">J {_num(metrics["J"])}</span>')
    key = f"keyframe {answer.keyframe}" if answer.keyframe is not None else "no keyframe"
    parts = [
        f'<section class="episode" id="{_e(anchor)}">',
        f"<h3>{_e(trace.get('sample_key', anchor))}</h3>",
        f'<div class="query">&ldquo;{_e(trace.get("query", ""))}&rdquo;</div>',
        f"<div>{''.join(tags)}</div>",
        f"<div>final answer: {_e(key)}; {_e(answer.describe())}"
        + (f"; points {_e(list(answer.points))}" if answer.points else "")
        + "</div>",
        _terms_table(reward, "reward terms"),
        _terms_table(metrics, "metrics"),
    ]
    parts += [_turn_html(turn, video) for turn in trace.get("turns", [])]
    if video is not None:
        parts.append(_pictures_html(trace, video, max_frames, fps))
    parts.append("</section>")
    return "\n".join(parts)


def build_page(
    run_dir: str | Path,
    *,
    stages: Sequence[str] | None = None,
    data_root: str | Path | None = None,
    max_episodes: int = 20,
    max_frames: int = 16,
    fps: float = 4,
) -> str:
    """The viewer page (HTML text) for `run_dir`: `stages` (default every evaluated one),
    the first `max_episodes` episodes of each, GIFs of at most `max_frames` frames."""
    run_dir = Path(run_dir)
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{run_dir}: not a jaxseg run directory (no config.json)")
    config = json.loads(config_path.read_text())
    available = [s for s in STAGES if (run_dir / "eval" / s / "traces.jsonl").is_file()]
    extra = sorted(
        p.parent.name
        for p in (run_dir / "eval").glob("*/traces.jsonl")
        if p.parent.name not in STAGES
    )
    available += extra
    stages = list(stages) if stages else available
    missing = [s for s in stages if s not in available]
    if missing:
        raise FileNotFoundError(
            f"{run_dir}: no eval/<stage>/traces.jsonl for {missing} (evaluated: {available})"
        )
    if not stages:
        raise FileNotFoundError(f"{run_dir}: no evaluated stage (eval/<stage>/traces.jsonl)")
    root = find_data_root(run_dir, config, data_root)
    index = {}
    if root is not None:
        from jaxseg.data.readers import read_dataset

        split = (config.get("data") or {}).get("eval_split") or "valid"
        fmt = (config.get("data") or {}).get("format") or "revos"
        index = {r.key: r for r in read_dataset(fmt, root, split)}

    def get(d: dict, *keys, default="?"):
        for k in keys:
            d = d.get(k, {}) if isinstance(d, dict) else {}
        return d if d not in ({}, None) else default

    sections, nav = [], []
    videos: dict[str, _Frames] = {}
    for stage in stages:
        out = run_dir / "eval" / stage
        lines = (out / "traces.jsonl").read_text().splitlines()
        traces = [json.loads(line) for line in lines if line.strip()][:max_episodes]
        summary_path = out / "summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
        name = STAGE_NAMES.get(stage, stage)
        nav.append(f'<a href="#stage-{_e(stage)}">{_e(name)}</a>')
        overall = summary.get("overall") or {}
        score = " ".join(
            f"{k} {overall[k]:.1f}" for k in ("JF", "J", "F") if overall.get(k) is not None
        )
        body = [
            f'<h2 id="stage-{_e(stage)}">{_e(name)} <small>({_e(stage)}; {len(traces)} of '
            f"{len(lines)} episodes{'; ' + _e(score) if score else ''})</small></h2>"
        ]
        for i, trace in enumerate(traces):
            record = index.get(trace.get("sample_key"))
            video = None
            if record is not None:
                if record.video_id not in videos:
                    videos[record.video_id] = _Frames(record.frame_paths)
                pred_dir = out / "pred" / record.video_id / record.exp_id
                video = _Video(record, pred_dir, videos[record.video_id])
            body.append(_episode_html(trace, record, video, f"{stage}-{i}", max_frames, fps))
        sections.append("\n".join(body))

    note = ""
    if root is None:
        note = (
            '<p class="note">The run\'s benchmark (data.root '
            f"{_e(get(config, 'data', 'root'))}) was not found: no frames or masks. "
            "Pass --data ROOT.</p>"
        )
    title = f"jaxseg traces: {run_dir.name or run_dir}"
    head = (
        f"<div>run <code>{_e(run_dir.resolve())}</code>; protocol "
        f"<b>{_e(get(config, 'protocol', 'name'))}</b>, model {_e(get(config, 'model', 'size'))}, "
        f"backend {_e(get(config, 'segmenter', 'backend'))}, seed {_e(config.get('seed', '?'))}"
        f"</div><nav>{''.join(nav)}</nav>"
    )
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f"<style>{STYLE}</style></head>\n"
        f"<body><header><h1>{_e(title)}</h1>{head}</header><main>{note}"
        + "\n".join(sections)
        + f"</main><script>{SCRIPT}</script></body></html>\n"
    )


def write_page(run_dir: str | Path, out: str | Path | None = None, **kwargs) -> Path:
    """Writes :func:`build_page` to `out` (default RUN/view.html); returns the path."""
    out = Path(out) if out is not None else Path(run_dir) / "view.html"
    page = build_page(run_dir, **kwargs)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out
