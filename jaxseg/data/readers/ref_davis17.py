"""Ref-DAVIS17 reader: DAVIS-2017 converted to the Ref-YouTube-VOS layout by ReferFormer's
`tools/data/convert_davis_to_ytvos.py`.

    ROOT/meta_expressions/<split>/meta_expressions.json
    ROOT/<split>/JPEGImages/<video>/<frame>.jpg
    ROOT/<split>/Annotations/<video>/<frame>.png   DAVIS-2017 *unsupervised* index PNGs (255 = void)

Expressions are written object-major, four per object in the order annotator-1 first-frame,
annotator-1 full-video, annotator-2 first-frame, annotator-2 full-video; so
`annotator = int(exp_id) % 4` (ReferFormer's `eval_davis.py`). The published number is the mean of the
four annotators' J&F.
"""

from __future__ import annotations

from pathlib import Path

from jaxseg.data.readers.records import ExpressionIndex
from jaxseg.data.readers.ref_youtube_vos import read_ytvos_layout

DATASET = "ref_davis17"


def _annotator(exp_id: str, exp: dict) -> dict:
    return {"annotator": int(exp_id) % 4} if exp_id.isdigit() else {}


def read_ref_davis17(
    root: str | Path,
    split: str = "valid",
    *,
    skip_bad: bool = False,
    verify_frames: bool = True,
) -> ExpressionIndex:
    return read_ytvos_layout(
        DATASET,
        root,
        split,
        skip_bad=skip_bad,
        verify_frames=verify_frames,
        extras_fn=_annotator,
    )
