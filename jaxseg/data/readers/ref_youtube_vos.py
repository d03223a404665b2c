"""Ref-YouTube-VOS reader (the layout ReferFormer, VISA and VideoLISA use).

    ROOT/meta_expressions/<split>/meta_expressions.json
        {"videos": {video: {"expressions": {exp_id: {"exp", "obj_id": "1"}}, "frames": [stems]}}}
    ROOT/<split>/JPEGImages/<video>/<frame>.jpg      every 5th frame of the 30 fps video; the stem
                                                     is the absolute frame index
    ROOT/<split>/Annotations/<video>/<frame>.png     palette PNG, index = object id (train only;
                                                     `valid` GT is private, scored on CodaLab)
    ROOT/<split>/meta.json (optional)                {"videos": {video: {"objects": {obj_id: ...}}}}

Ref-DAVIS17 converted by ReferFormer's `tools/data/convert_davis_to_ytvos.py` has the same
layout (see `ref_davis17`).
"""

from __future__ import annotations

import os
from pathlib import Path

from jaxseg.data.readers.common import (
    field_of,
    listed_video,
    load_json,
    safe_name,
    text_of,
    videos_of,
)
from jaxseg.data.readers.errors import BadInputPolicy, DataFormatError
from jaxseg.data.readers.masks import PaletteMasks
from jaxseg.data.readers.records import ExpressionIndex, VideoExpression

DATASET = "ref_youtube_vos"


def read_ref_youtube_vos(
    root: str | Path,
    split: str = "valid",
    *,
    skip_bad: bool = False,
    verify_frames: bool = True,
) -> ExpressionIndex:
    return read_ytvos_layout(DATASET, root, split, skip_bad=skip_bad, verify_frames=verify_frames)


def read_ytvos_layout(
    dataset: str,
    root: str | Path,
    split: str,
    *,
    skip_bad: bool,
    verify_frames: bool,
    extras_fn=None,
) -> ExpressionIndex:
    root = Path(root)
    meta_path = root / "meta_expressions" / split / "meta_expressions.json"
    videos = videos_of(load_json(meta_path, "meta_expressions"), meta_path)
    split_dir = root / split
    anno_dir = split_dir / "Annotations"
    objects_path = split_dir / "meta.json"
    objects = None
    if objects_path.is_file():
        objects = videos_of(load_json(objects_path, "meta"), objects_path)
    policy = BadInputPolicy(skip_bad)
    records: list[VideoExpression] = []
    for video, info in videos.items():
        vfield = f'videos["{video}"]'
        try:
            safe_name(video, meta_path, vfield)
            names, expressions, paths, ids, height, width = listed_video(
                info,
                split_dir / "JPEGImages" / video,
                meta_path=meta_path,
                field=vfield,
                verify=verify_frames,
            )
        except DataFormatError as err:
            policy.report(err)
            continue
        has_gt = (anno_dir / video).is_dir()
        pngs = tuple(
            p if os.path.isfile(p) else None
            for p in (str(anno_dir / video / f"{n}.png") for n in names)
        )
        known = None
        if objects is not None:
            known = set(map(str, (objects.get(video) or {}).get("objects", {}).keys()))
        for exp_id, exp in expressions:
            efield = f'{vfield}.expressions["{exp_id}"]'
            try:
                text = text_of(exp, "exp", meta_path, efield)
                obj_id = safe_name(field_of(exp, "obj_id", meta_path, efield), meta_path, efield)
                if not obj_id.isdigit() or not 0 < int(obj_id) < 256:
                    raise DataFormatError(
                        meta_path, f"{efield}.obj_id", f"{obj_id!r} is not a palette index 1..255"
                    )
                if known is not None and obj_id not in known:
                    raise DataFormatError(
                        meta_path,
                        f"{efield}.obj_id",
                        f"names object {obj_id}, which {objects_path} does not list for this video",
                    )
            except DataFormatError as err:
                policy.report(err)
                continue
            masks = PaletteMasks(pngs, (int(obj_id),), height, width) if has_gt else None
            extras = {"annotated": tuple(i for i, p in enumerate(pngs) if p is not None)}
            if extras_fn is not None:
                extras.update(extras_fn(str(exp_id), exp))
            records.append(
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
                    target_ids=(obj_id,),
                    masks=masks,
                    extras=extras,
                )
            )
    return ExpressionIndex(dataset, str(root), records, policy.skipped)
