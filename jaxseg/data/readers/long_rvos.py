"""Long-RVOS reader (iSEE-Laboratory/Long_RVOS README and `eval/eval_long_rvos/`).

    ROOT/<split>/JPEGImages/<video>/<frame>.jpg
    ROOT/<split>/Annotations/<video>/<obj_id>/<frame>.png   binary; a missing PNG = object absent
    ROOT/<split>/meta_expressions.json  {"videos": {video: {"frames": [stems], "expressions":
                                         {exp_id: {"exp", "obj_id", "type": static|dynamic|hybrid}}}}}

Scored per type and overall (mean over all expressions), with J, F, tIoU and vIoU.
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
from jaxseg.data.readers.masks import BinaryPngMasks
from jaxseg.data.readers.records import ExpressionIndex, VideoExpression

DATASET = "long_rvos"
TYPES = ("static", "dynamic", "hybrid")


def read_long_rvos(
    root: str | Path,
    split: str = "valid",
    *,
    skip_bad: bool = False,
    verify_frames: bool = True,
) -> ExpressionIndex:
    split_dir = Path(root) / split
    meta_path = split_dir / "meta_expressions.json"
    videos = videos_of(load_json(meta_path, "meta_expressions"), meta_path)
    anno_dir = split_dir / "Annotations"
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
        for exp_id, exp in expressions:
            efield = f'{vfield}.expressions["{exp_id}"]'
            try:
                text = text_of(exp, "exp", meta_path, efield)
                obj_id = safe_name(field_of(exp, "obj_id", meta_path, efield), meta_path, efield)
                kind = exp.get("type")
                if kind is not None and kind not in TYPES:
                    raise DataFormatError(meta_path, f"{efield}.type", f"{kind!r} not in {TYPES}")
                obj_dir = anno_dir / video / obj_id
                if has_gt and not obj_dir.is_dir():
                    raise DataFormatError(
                        meta_path,
                        f"{efield}.obj_id",
                        f"names object {obj_id}, but {obj_dir} does not exist",
                    )
            except DataFormatError as err:
                policy.report(err)
                continue
            masks = None
            if has_gt:
                pngs = tuple(
                    p if os.path.isfile(p) else None
                    for p in (os.path.join(obj_dir, f"{n}.png") for n in names)
                )
                masks = BinaryPngMasks((pngs,), height, width)
            records.append(
                VideoExpression(
                    dataset=DATASET,
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
                    extras={"long_rvos_type": kind},
                )
            )
    return ExpressionIndex(DATASET, str(root), records, policy.skipped)
