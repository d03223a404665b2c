"""ReVOS reader (cilinyan/VISA layout), shared with MeViS, which uses the same files.

Layout (VISA `utils/dataset_config.py`, `tools/eval_revos.py`, `tools/generate_foreground_mask.py`):

    ROOT/JPEGImages/<video>/<frame>.jpg         video names may contain '/' (e.g. "UVO/all/x")
    ROOT/meta_expressions_<split>_.json         {"videos": {video: {"vid_id", "height", "width",
                                                 "frames": [stems], "expressions": {exp_id:
                                                 {"exp", "obj_id": [..], "anno_id": [..], "type_id"}}}}}
    ROOT/mask_dict.json                         {anno_id: [COCO RLE or null per frame]}
    ROOT/mask_dict_foreground.json (optional)   {video: {"masks_rle": [RLE per frame], ...}}

The GT of an expression is the union of its anno_ids; type_id 0 referring, 1 reasoning,
2 null target. Without the foreground file the foreground is built the way
`generate_foreground_mask.py` builds it: the union of every anno_id any expression of the
video names.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from jaxseg.data.readers.common import (
    int_of,
    listed_video,
    load_json,
    safe_name,
    text_of,
    videos_of,
)
from jaxseg.data.readers.errors import BadInputPolicy, DataFormatError
from jaxseg.data.readers.masks import RleMasks
from jaxseg.data.readers.records import (
    TYPE_NULL,
    TYPE_REASONING,
    TYPE_REFERRING,
    ExpressionIndex,
    VideoExpression,
)

DATASET = "revos"


def revos_meta_path(root: str | Path, split: str | None) -> Path:
    """The meta file of a split: VISA names it `meta_expressions_<split>_.json`."""
    root = Path(root)
    candidates = ["meta_expressions.json"]
    if split:
        candidates = [
            f"meta_expressions_{split}_.json",
            f"meta_expressions_{split}.json",
            *candidates,
        ]
    for name in candidates:
        if (root / name).is_file():
            return root / name
    raise DataFormatError(root, "meta_expressions", f"none of {candidates} exists")


def read_revos(
    root: str | Path,
    split: str | None = "valid",
    *,
    meta_file: str | Path | None = None,
    skip_bad: bool = False,
    verify_frames: bool = True,
) -> ExpressionIndex:
    root = Path(root)
    meta_path = Path(meta_file) if meta_file else revos_meta_path(root, split)
    foreground_path = root / "mask_dict_foreground.json"
    return read_rle_layout(
        DATASET,
        meta_path=meta_path,
        mask_dict_path=root / "mask_dict.json",
        frames_dir=root / "JPEGImages",
        foreground_path=foreground_path if foreground_path.is_file() else None,
        require_type_id=True,
        skip_bad=skip_bad,
        verify_frames=verify_frames,
    )


def _video_field(video: str) -> str:
    return f'videos["{video}"]'


def read_rle_layout(
    dataset: str,
    *,
    meta_path: Path,
    mask_dict_path: Path | None,
    frames_dir: Path,
    foreground_path: Path | None,
    require_type_id: bool,
    skip_bad: bool,
    verify_frames: bool,
) -> ExpressionIndex:
    """Read a meta_expressions.json + mask_dict.json dataset (ReVOS, MeViS)."""
    policy = BadInputPolicy(skip_bad)
    videos = videos_of(load_json(meta_path, "meta_expressions"), meta_path)
    mask_dict = None
    if mask_dict_path is not None and mask_dict_path.is_file():
        mask_dict = load_json(mask_dict_path, "mask_dict")
        if not isinstance(mask_dict, dict):
            raise DataFormatError(mask_dict_path, "<root>", "expected {anno_id: [RLE, ...]}")
    foreground = load_json(foreground_path, "mask_dict_foreground") if foreground_path else None

    records: list[VideoExpression] = []
    for video, info in videos.items():
        vfield = _video_field(video)
        try:
            safe_name(video, meta_path, vfield)
            names, expressions, paths, ids, height, width = listed_video(
                info, frames_dir / video, meta_path=meta_path, field=vfield, verify=verify_frames
            )
            for key in ("height", "width"):
                declared = info.get(key)
                actual = height if key == "height" else width
                if declared is None:
                    continue
                if int_of(declared, meta_path, f"{vfield}.{key}") != actual:
                    raise DataFormatError(
                        meta_path,
                        f"{vfield}.{key}",
                        f"says {declared} but the frames are {actual} px",
                    )
        except DataFormatError as err:
            policy.report(err)
            continue

        video_masks: dict[str, RleMasks] = {}

        video_records: list[VideoExpression] = []
        used_anno: list[str] = []
        for exp_id, exp in expressions:
            efield = f'{vfield}.expressions["{exp_id}"]'
            try:
                text = text_of(exp, "exp", meta_path, efield)
                anno_ids = [str(a) for a in _as_list(exp.get("anno_id", []))]
                type_id = exp.get("type_id")
                if type_id is None:
                    if require_type_id:
                        raise DataFormatError(meta_path, f"{efield}.type_id", "is missing")
                    type_id = TYPE_REFERRING
                type_id = int_of(type_id, meta_path, f"{efield}.type_id")
                if type_id not in (TYPE_REFERRING, TYPE_REASONING, TYPE_NULL):
                    raise DataFormatError(
                        meta_path, f"{efield}.type_id", f"{type_id} is not 0, 1 or 2"
                    )
                masks = None
                if mask_dict is not None:
                    masks = _target_masks(
                        anno_ids,
                        mask_dict,
                        video_masks,
                        (height, width, len(names)),
                        meta_path,
                        mask_dict_path,
                        efield,
                    )
            except DataFormatError as err:
                policy.report(err)
                continue
            used_anno.extend(a for a in anno_ids if a not in used_anno)
            video_records.append(
                VideoExpression(
                    dataset=dataset,
                    video_id=video,
                    exp_id=str(exp_id),
                    expression=str(text),
                    frame_names=tuple(str(n) for n in names),
                    frame_paths=paths,
                    frame_ids=ids,
                    height=height,
                    width=width,
                    target_ids=tuple(anno_ids),
                    type_id=type_id,
                    masks=masks,
                    extras={"obj_id": [str(o) for o in _as_list(exp.get("obj_id", []))]},
                )
            )

        fg = None
        if mask_dict is not None:
            try:
                fg = _foreground(foreground, foreground_path, video, video_masks, used_anno, names)
                if fg is not None:
                    fg = RleMasks(fg.rles, height, width, len(names), fg.path, fg.fields)
                    fg.validate()
            except DataFormatError as err:
                policy.report(err)
                continue
        for record in video_records:
            records.append(_with_foreground(record, fg))
    return ExpressionIndex(dataset, str(frames_dir.parent), records, policy.skipped)


def _target_masks(
    anno_ids: list[str],
    mask_dict: dict,
    cache: dict[str, RleMasks],
    shape: tuple[int, int, int],
    meta_path: Path,
    mask_dict_path: Path | None,
    efield: str,
) -> RleMasks:
    """RLE masks of an expression's anno_ids, each list validated once per video."""
    height, width, num_frames = shape
    for aid in anno_ids:
        if aid not in mask_dict:
            raise DataFormatError(
                meta_path,
                f"{efield}.anno_id",
                f"names annotation {aid!r}, which {mask_dict_path} does not contain",
            )
        if aid not in cache:
            one = RleMasks(
                (mask_dict[aid],),
                height,
                width,
                num_frames,
                path=str(mask_dict_path),
                fields=(f'["{aid}"]',),
            )
            one.validate()
            cache[aid] = one
    return RleMasks(
        tuple(cache[a].rles[0] for a in anno_ids),
        height,
        width,
        num_frames,
        path=str(mask_dict_path),
        fields=tuple(f'["{a}"]' for a in anno_ids),
    )


def _foreground(foreground, path, video, video_masks, used_anno, names) -> RleMasks | None:
    if foreground is not None:
        entry = foreground.get(video)
        if not isinstance(entry, dict) or "masks_rle" not in entry:
            raise DataFormatError(path, f'["{video}"].masks_rle', "is missing")
        return RleMasks(
            (entry["masks_rle"],), 0, 0, len(names), str(path), (f'["{video}"].masks_rle',)
        )
    if not used_anno:
        return None
    return RleMasks(
        tuple(video_masks[a].rles[0] for a in used_anno),
        0,
        0,
        len(names),
        video_masks[used_anno[0]].path,
        tuple(f'["{a}"]' for a in used_anno),
    )


def _with_foreground(record: VideoExpression, fg: RleMasks | None) -> VideoExpression:
    return dataclasses.replace(record, foreground=fg)


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


__all__ = ["read_revos", "read_rle_layout", "revos_meta_path"]
