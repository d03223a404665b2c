"""MeViS reader (henghuiding/MeViS layout; the same files as ReVOS, one folder per split).

    ROOT/<split>/JPEGImages/<video>/<frame>.jpg
    ROOT/<split>/meta_expressions.json   {"videos": {video: {"vid_id", "frames": [stems],
                                          "expressions": {exp_id: {"exp", "obj_id": [..],
                                          "anno_id": [..]}}}}}
    ROOT/<split>/mask_dict.json          {anno_id: [RLE or null per frame]}; absent in `valid`
                                          (scored on the server), present in `train` and `valid_u`.

MeViS has no type ids: every expression is type 0. GT = union of anno_ids, multi-object
expressions included (`tools/eval_mevis.py`).
"""

from __future__ import annotations

from pathlib import Path

from jaxseg.data.readers.records import ExpressionIndex
from jaxseg.data.readers.revos import read_rle_layout

DATASET = "mevis"


def read_mevis(
    root: str | Path,
    split: str = "valid_u",
    *,
    skip_bad: bool = False,
    verify_frames: bool = True,
) -> ExpressionIndex:
    split_dir = Path(root) / split
    return read_rle_layout(
        DATASET,
        meta_path=split_dir / "meta_expressions.json",
        mask_dict_path=split_dir / "mask_dict.json",
        frames_dir=split_dir / "JPEGImages",
        foreground_path=None,
        require_type_id=False,
        skip_bad=skip_bad,
        verify_frames=verify_frames,
    )
