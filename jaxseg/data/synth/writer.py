"""Writing the benchmark in the ReVOS on-disk layout (cilinyan/VISA, ReVOS-api README).

    OUT/JPEGImages/<video>/<frame>.jpg        all splits share one folder, as in ReVOS
    OUT/mask_dict.json                        {anno_id: [COCO RLE | null per frame]}
    OUT/mask_dict_foreground.json             {video: {"masks_rle": [RLE per frame],
                                                        "foreground_ratio": [float per frame]}}
    OUT/meta_expressions_<split>_.json        {"videos": {video: {"vid_id", "height", "width",
                                                "frames", "expressions": {exp_id: {"exp",
                                                "obj_id", "anno_id", "type_id"}}}}}
    OUT/synth_scene_graph_<split>_.json       our sidecar (scene graph, events, programs)

The ReVOS files hold only ReVOS keys. Every object gets one anno_id (a per-frame track of
its *visible* mask, null where nothing of it shows). A null query (type_id 2) names no
object: obj_id and anno_id are empty lists, so the union of its masks is empty in every
frame. The foreground is the union of all annotated objects of the video, encoded the way
VISA's `tools/generate_foreground_mask.py` does (which unions the anno_ids the expressions
name; here every object is annotated, whether or not a query names it).
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pycocotools.mask as mask_utils
from PIL import Image
from tqdm import tqdm

from jaxseg.data.synth.generate import SynthVideo, generate_video
from jaxseg.data.synth.world import TYPE_NULL, SynthConfig

SIDECAR_FORMAT = "jaxseg-synth/1"
SPLITS = ("train", "valid")


def meta_name(split: str) -> str:
    return f"meta_expressions_{split}_.json"


def sidecar_name(split: str) -> str:
    return f"synth_scene_graph_{split}_.json"


def video_name(split: str, index: int) -> str:
    return f"{split}_{index:05d}"


def frame_name(t: int) -> str:
    return f"{t:05d}"


def encode_rles(masks: np.ndarray) -> list[dict[str, Any] | None]:
    """[T, H, W] bool -> per-frame COCO RLE with str counts; None where the mask is empty."""
    stacked = np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8))
    rles = mask_utils.encode(stacked)
    out: list[dict[str, Any] | None] = []
    for t, rle in enumerate(rles):
        if not masks[t].any():
            out.append(None)
            continue
        out.append({"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode()})
    return out


def jpeg_bytes(frame: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _expression_sidecar(video: SynthVideo, query: dict[str, Any]) -> dict[str, Any]:
    targets = query["targets"]
    if targets:
        area = video.masks[targets].sum(axis=(0, 2, 3))  # [T] target area per frame
    else:
        area = np.zeros(video.masks.shape[1], np.int64)
    objects = video.graph["objects"]

    def looks(k: int) -> set[str]:
        return {objects[k]["shape"], *objects[k]["colour"]}

    target_looks = set().union(*(looks(k) for k in targets)) if targets else set()
    program = query["program"]
    return {
        "kind": query["kind"],
        "family": program["op"] + (":" + program["event"] if program["op"] == "event" else ""),
        "program": program,
        "multi": len(targets) > 1,
        "null": query["type_id"] == TYPE_NULL,
        "target_area": [int(a) for a in area],
        # keyframe: the frame where the targets are largest (Veason-R1 / RCoT-Seg use the
        # largest-area frame; Veason-R1 samples among the top 5 for its pseudo-keyframe)
        "keyframe": int(np.argmax(area)) if targets else None,
        # difficulty descriptors
        "visible_frames": int((area > 0).sum()),
        "distractors": sum(
            1 for k in range(len(objects)) if k not in targets and looks(k) & target_looks
        ),
        "compositional": program["op"] == "event" and bool(program.get("filter")),
    }


PARTIAL_MARKER = "jaxseg_synth.partial"  # written before a generation, removed after it


def write_benchmark(
    out: str | Path,
    splits: Mapping[str, int],
    seed: int,
    cfg: SynthConfig | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Generate `splits` ({split: number of videos}) under `out`. Returns a summary."""
    cfg = cfg or SynthConfig()
    out = Path(out)
    for split, n in splits.items():
        if not split or "/" in split or n < 0:
            raise ValueError(f"bad split {split!r} with {n} videos")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} is not empty; pass overwrite=True (--overwrite)")
        ours = (out / "mask_dict.json").exists() or (out / PARTIAL_MARKER).exists()
        if not ours:
            raise FileExistsError(f"{out} is not a synthetic benchmark; refusing to overwrite it")
        shutil.rmtree(out / "JPEGImages", ignore_errors=True)
        for p in out.glob("*.json"):
            p.unlink()
    (out / "JPEGImages").mkdir(parents=True, exist_ok=True)

    mask_dict: dict[str, list] = {}
    foreground: dict[str, dict[str, list]] = {}
    summary: dict[str, Any] = {"seed": seed, "splits": {}}
    vid_id = anno_id = 0
    bar = tqdm(total=sum(splits.values()), disable=not progress, desc="synth", unit="video")
    for split, n in splits.items():
        videos_meta: dict[str, Any] = {}
        sidecar: dict[str, Any] = {}
        counts = {"videos": 0, "expressions": 0, "type_id": {}, "kind": {}, "partial": 0}
        for index in range(n):
            video = generate_video(seed, split, index, cfg)
            name = video_name(split, index)
            T, H, W = video.frames.shape[:3]
            frame_dir = out / "JPEGImages" / name
            frame_dir.mkdir(parents=True, exist_ok=True)
            for t in range(T):
                (frame_dir / f"{frame_name(t)}.jpg").write_bytes(
                    jpeg_bytes(video.frames[t], cfg.jpeg_quality)
                )
            obj_anno = []
            for i in range(video.masks.shape[0]):
                mask_dict[str(anno_id)] = encode_rles(video.masks[i])
                obj_anno.append(anno_id)
                anno_id += 1
            fg = video.masks.any(axis=0)  # [T, H, W]
            foreground[name] = {
                "masks_rle": [r if r else _empty_rle(H, W) for r in encode_rles(fg)],
                "foreground_ratio": [float(fg[t].mean()) for t in range(T)],
            }
            expressions = {}
            exp_sidecar = {}
            for k, q in enumerate(video.queries):
                expressions[str(k)] = {
                    "exp": q["exp"],
                    "obj_id": list(q["targets"]),
                    "anno_id": [obj_anno[i] for i in q["targets"]],
                    "type_id": q["type_id"],
                }
                exp_sidecar[str(k)] = _expression_sidecar(video, q)
                counts["type_id"][q["type_id"]] = counts["type_id"].get(q["type_id"], 0) + 1
                counts["kind"][q["kind"]] = counts["kind"].get(q["kind"], 0) + 1
                area = exp_sidecar[str(k)]["target_area"]
                counts["partial"] += bool(q["targets"]) and min(area) == 0
            videos_meta[name] = {
                "vid_id": vid_id,
                "height": H,
                "width": W,
                "frames": [frame_name(t) for t in range(T)],
                "expressions": expressions,
            }
            sidecar[name] = {
                "seed": video.seed,
                "background": video.background,
                "anno_id": obj_anno,
                "graph": video.graph,
                "plan": video.plan,
                "expressions": exp_sidecar,
            }
            vid_id += 1
            counts["videos"] += 1
            counts["expressions"] += len(expressions)
            bar.update(1)
        _dump(out / meta_name(split), {"videos": videos_meta})
        _dump(
            out / sidecar_name(split),
            {
                "format": SIDECAR_FORMAT,
                "seed": seed,
                "split": split,
                "config": cfg.to_json(),
                "videos": sidecar,
            },
        )
        counts["type_id"] = {str(k): v for k, v in sorted(counts["type_id"].items())}
        summary["splits"][split] = counts
    bar.close()
    _dump(out / "mask_dict.json", mask_dict)
    _dump(out / "mask_dict_foreground.json", foreground)
    return summary


def _empty_rle(h: int, w: int) -> dict[str, Any]:
    rle = mask_utils.encode(np.zeros((h, w), np.uint8, order="F"))
    return {"size": [h, w], "counts": rle["counts"].decode()}


def _dump(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, separators=(",", ":")))
