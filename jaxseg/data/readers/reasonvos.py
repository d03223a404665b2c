"""ReasonVOS reader (showlab/VideoLISA `evaluation/reason_vos/`, BENCHMARK.md).

    ROOT/meta_expressions.json   {"videos": {video: {"source", "is_sent", "expressions":
                                  {key: {"obj_id", "exp_text"}}}}}
    ROOT/JPEGImages/<video>/*.jpg                       all frames (sorted file names)
    ROOT/Annotations/<source>_<video>_<obj_id>/*.png    binary GT, one PNG per evaluated frame

The expression is identified by its obj_id (the evaluation script files predictions under
`<pred>/<video>/<obj_id>/`), and only the frames with a GT PNG are scored. `is_sent` may sit
on the video (as the released scripts read it) or on the expression.
"""

from __future__ import annotations

import os
from pathlib import Path

from jaxseg.data.readers.common import (
    expressions_of,
    field_of,
    frame_files,
    listed_frames,
    load_json,
    safe_name,
    text_of,
    videos_of,
)
from jaxseg.data.readers.errors import BadInputPolicy, DataFormatError
from jaxseg.data.readers.masks import BinaryPngMasks
from jaxseg.data.readers.records import ExpressionIndex, VideoExpression

DATASET = "reasonvos"


def read_reasonvos(
    root: str | Path,
    split: str | None = None,
    *,
    skip_bad: bool = False,
    verify_frames: bool = True,
) -> ExpressionIndex:
    del split  # ReasonVOS is a single evaluation set
    root = Path(root)
    meta_path = root / "meta_expressions.json"
    videos = videos_of(load_json(meta_path, "meta_expressions"), meta_path)
    policy = BadInputPolicy(skip_bad)
    records: list[VideoExpression] = []
    for video, info in videos.items():
        vfield = f'videos["{video}"]'
        try:
            safe_name(video, meta_path, vfield)
            source = safe_name(field_of(info, "source", meta_path, vfield), meta_path, vfield)
            expressions = expressions_of(info, meta_path, vfield)
            names = info.get("frames") or listed_frames(root / "JPEGImages" / video)
            paths, ids, height, width = frame_files(
                root / "JPEGImages" / video,
                names,
                meta_path=meta_path,
                field=f"{vfield}.frames (JPEGImages/{video})",
                verify=verify_frames,
            )
        except DataFormatError as err:
            policy.report(err)
            continue
        position = {str(n): i for i, n in enumerate(names)}
        for key, exp in expressions:
            efield = f'{vfield}.expressions["{key}"]'
            try:
                obj_id = safe_name(field_of(exp, "obj_id", meta_path, efield), meta_path, efield)
                text = text_of(exp, "exp_text" if "exp_text" in exp else "exp", meta_path, efield)
                gt_dir = root / "Annotations" / f"{source}_{video}_{obj_id}"
                if not gt_dir.is_dir():
                    raise DataFormatError(
                        meta_path,
                        f"{efield}.obj_id",
                        f"names object {obj_id}, but {gt_dir} does not exist",
                    )
                gt_names = listed_frames(gt_dir, ".png")
                if not gt_names:
                    raise DataFormatError(gt_dir, "Annotations", "holds no PNG masks")
                stray = [n for n in gt_names if n not in position]
                if stray:
                    raise DataFormatError(
                        gt_dir / f"{stray[0]}.png", "Annotations", "has no matching frame JPEG"
                    )
            except DataFormatError as err:
                policy.report(err)
                continue
            pngs = [None] * len(names)
            for n in gt_names:
                pngs[position[n]] = os.path.join(gt_dir, f"{n}.png")
            is_sent = exp.get("is_sent", info.get("is_sent"))
            records.append(
                VideoExpression(
                    dataset=DATASET,
                    video_id=video,
                    exp_id=obj_id,
                    expression=str(text),
                    frame_names=tuple(str(n) for n in names),
                    frame_paths=paths,
                    frame_ids=ids,
                    height=height,
                    width=width,
                    target_ids=(obj_id,),
                    masks=BinaryPngMasks((tuple(pngs),), height, width),
                    extras={
                        "source": source,
                        "is_sent": bool(is_sent) if is_sent is not None else None,
                        "annotated": tuple(position[n] for n in gt_names),
                        "meta_key": str(key),
                    },
                )
            )
    return ExpressionIndex(DATASET, str(root), records, policy.skipped)
