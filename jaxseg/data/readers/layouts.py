"""Write videos + masks + expressions in each benchmark's native on-disk layout.

The inverse of the readers: used to build test fixtures, to convert synthetic data to
another benchmark's layout, and (`write_prediction_pngs`) to write predictions in the
submission layout `<pred>/<video>/<exp_id>/<frame>.png` that `jaxseg eval` reads.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
from PIL import Image


@dataclasses.dataclass
class ExpressionSpec:
    text: str
    obj_ids: list[int]
    type_id: int = 0
    kind: str | None = None  # Long-RVOS "static" / "dynamic" / "hybrid"


@dataclasses.dataclass
class VideoSpec:
    """frames: [T, H, W, 3] uint8; objects: obj_id (1..255) -> [T, H, W] bool."""

    name: str
    frames: np.ndarray
    objects: dict[int, np.ndarray]
    expressions: list[ExpressionSpec]

    @property
    def frame_names(self) -> list[str]:
        return [f"{t:05d}" for t in range(len(self.frames))]


def encode_rle(mask: np.ndarray) -> dict | None:
    """[H, W] bool -> JSON-ready COCO RLE, or None for an empty mask (as ReVOS stores it)."""
    if not mask.any():
        return None
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"]}


def _write_frames(frames_dir: Path, video: VideoSpec) -> None:
    frames_dir.mkdir(parents=True, exist_ok=True)
    for name, frame in zip(video.frame_names, video.frames):
        Image.fromarray(frame).save(frames_dir / f"{name}.jpg", quality=95)


def _dump(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f)


def _rle_meta(videos: Sequence[VideoSpec], frames_root: Path, with_type: bool):
    """meta_expressions + mask_dict (+ foreground) with one anno_id per (video, object)."""
    meta, mask_dict, foreground = {}, {}, {}
    next_anno = 0
    for video in videos:
        _write_frames(frames_root / video.name, video)
        anno_of = {}
        for obj_id, masks in sorted(video.objects.items()):
            anno_of[obj_id] = str(next_anno)
            mask_dict[str(next_anno)] = [encode_rle(m) for m in masks]
            next_anno += 1
        expressions = {}
        for i, exp in enumerate(video.expressions):
            entry = {
                "exp": exp.text,
                "obj_id": list(exp.obj_ids),
                "anno_id": [anno_of[o] for o in exp.obj_ids],
            }
            if with_type:
                entry["type_id"] = exp.type_id
            expressions[str(i)] = entry
        t, h, w = len(video.frames), *video.frames.shape[1:3]
        meta[video.name] = {
            "vid_id": len(meta),
            "height": h,
            "width": w,
            "frames": video.frame_names,
            "expressions": expressions,
        }
        union = np.zeros((t, h, w), dtype=bool)
        for masks in video.objects.values():
            union |= masks
        fg = [mask_utils.encode(np.asfortranarray(m.astype(np.uint8))) for m in union]
        for r in fg:
            r["counts"] = r["counts"].decode("ascii")
            r["size"] = [int(s) for s in r["size"]]
        foreground[video.name] = {
            "masks_rle": fg,
            "foreground_ratio": [float(m.mean()) for m in union],
        }
    return {"videos": meta}, mask_dict, foreground


def write_revos(root: str | Path, videos: Sequence[VideoSpec], split: str | None = "valid"):
    root = Path(root)
    meta, mask_dict, foreground = _rle_meta(videos, root / "JPEGImages", with_type=True)
    name = f"meta_expressions_{split}_.json" if split else "meta_expressions.json"
    _dump(root / name, meta)
    _dump(root / "mask_dict.json", mask_dict)
    _dump(root / "mask_dict_foreground.json", foreground)
    return root


def write_mevis(root: str | Path, videos: Sequence[VideoSpec], split: str = "valid_u"):
    split_dir = Path(root) / split
    meta, mask_dict, _ = _rle_meta(videos, split_dir / "JPEGImages", with_type=False)
    _dump(split_dir / "meta_expressions.json", meta)
    _dump(split_dir / "mask_dict.json", mask_dict)
    return Path(root)


def _palette_png(labels: np.ndarray, path: Path) -> None:
    image = Image.fromarray(labels.astype(np.uint8), mode="P")
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[1:] = np.stack(
        [(np.arange(1, 256) * 67) % 256, (np.arange(1, 256) * 131) % 256, 128 + 0 * np.arange(255)],
        axis=1,
    )
    image.putpalette(palette.reshape(-1).tolist())
    image.save(path)


def write_ytvos(root: str | Path, videos: Sequence[VideoSpec], split: str = "train"):
    """Ref-YouTube-VOS / ReferFormer Ref-DAVIS17 layout with palette-PNG annotations."""
    root = Path(root)
    meta, objects = {}, {}
    for video in videos:
        _write_frames(root / split / "JPEGImages" / video.name, video)
        anno_dir = root / split / "Annotations" / video.name
        anno_dir.mkdir(parents=True, exist_ok=True)
        h, w = video.frames.shape[1:3]
        for i, name in enumerate(video.frame_names):
            labels = np.zeros((h, w), dtype=np.uint8)
            for obj_id, masks in sorted(video.objects.items()):
                labels[masks[i]] = obj_id
            _palette_png(labels, anno_dir / f"{name}.png")
        meta[video.name] = {
            "expressions": {
                str(i): {"exp": e.text, "obj_id": str(e.obj_ids[0])}
                for i, e in enumerate(video.expressions)
            },
            "frames": video.frame_names,
        }
        objects[video.name] = {
            "objects": {str(o): {"category": "thing"} for o in sorted(video.objects)}
        }
    _dump(root / "meta_expressions" / split / "meta_expressions.json", {"videos": meta})
    _dump(root / split / "meta.json", {"videos": objects})
    return root


def write_reasonvos(root: str | Path, videos: Sequence[VideoSpec], source: str = "src"):
    root = Path(root)
    meta = {}
    for video in videos:
        _write_frames(root / "JPEGImages" / video.name, video)
        expressions = {}
        for i, e in enumerate(video.expressions):
            obj_id = e.obj_ids[0]
            expressions[str(i)] = {"obj_id": obj_id, "exp_text": e.text}
            gt_dir = root / "Annotations" / f"{source}_{video.name}_{obj_id}"
            gt_dir.mkdir(parents=True, exist_ok=True)
            for name, m in zip(video.frame_names, video.objects[obj_id]):
                Image.fromarray(m.astype(np.uint8) * 255).save(gt_dir / f"{name}.png")
        meta[video.name] = {"source": source, "is_sent": 1, "expressions": expressions}
    _dump(root / "meta_expressions.json", {"videos": meta})
    return root


def write_long_rvos(root: str | Path, videos: Sequence[VideoSpec], split: str = "valid"):
    """Binary PNGs only on frames where the object is present (a missing PNG = absent)."""
    split_dir = Path(root) / split
    meta = {}
    for video in videos:
        _write_frames(split_dir / "JPEGImages" / video.name, video)
        for obj_id, masks in video.objects.items():
            obj_dir = split_dir / "Annotations" / video.name / str(obj_id)
            obj_dir.mkdir(parents=True, exist_ok=True)
            for name, m in zip(video.frame_names, masks):
                if m.any():
                    Image.fromarray(m.astype(np.uint8) * 255).save(obj_dir / f"{name}.png")
        meta[video.name] = {
            "frames": video.frame_names,
            "expressions": {
                str(i): {"exp": e.text, "obj_id": str(e.obj_ids[0]), "type": e.kind or "static"}
                for i, e in enumerate(video.expressions)
            },
        }
    _dump(split_dir / "meta_expressions.json", {"videos": meta})
    return Path(root)


def write_prediction_pngs(
    pred_dir: str | Path,
    video_id: str,
    exp_id: str,
    frame_names: Sequence[str],
    masks: np.ndarray,
    value: int = 255,
) -> None:
    """masks: [T, H, W] bool -> `<pred_dir>/<video>/<exp_id>/<frame>.png` with 0 / `value`."""
    out = Path(pred_dir) / video_id / str(exp_id)
    os.makedirs(out, exist_ok=True)
    for name, m in zip(frame_names, masks):
        Image.fromarray(np.where(m, value, 0).astype(np.uint8)).save(out / f"{name}.png")
