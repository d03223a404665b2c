"""Readers for reasoning / referring VOS benchmarks stored on disk in their native layouts.

Each reader returns an `ExpressionIndex`: a random-access sequence of `VideoExpression`
records (one per video x expression, masks decoded lazily) plus the items skipped under
`skip_bad=True`. `read_dataset(format, root, split)` picks the reader by name.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from jaxseg.data.readers.errors import BadInputWarning, DataFormatError
from jaxseg.data.readers.long_rvos import read_long_rvos
from jaxseg.data.readers.mevis import read_mevis
from jaxseg.data.readers.reasonvos import read_reasonvos
from jaxseg.data.readers.records import ExpressionIndex, VideoExpression
from jaxseg.data.readers.ref_davis17 import read_ref_davis17
from jaxseg.data.readers.ref_youtube_vos import read_ref_youtube_vos
from jaxseg.data.readers.revos import read_revos

READERS: dict[str, Callable[..., ExpressionIndex]] = {
    "revos": read_revos,
    "mevis": read_mevis,
    "ref_youtube_vos": read_ref_youtube_vos,
    "ref_davis17": read_ref_davis17,
    "reasonvos": read_reasonvos,
    "long_rvos": read_long_rvos,
}

# The split each benchmark is evaluated on locally (None: the reader decides).
DEFAULT_SPLITS: dict[str, str | None] = {
    "revos": "valid",
    "mevis": "valid_u",
    "ref_youtube_vos": "valid",
    "ref_davis17": "valid",
    "reasonvos": None,
    "long_rvos": "valid",
}


def read_dataset(
    format: str,
    root: str | Path,
    split: str | None = None,
    *,
    skip_bad: bool = False,
    verify_frames: bool = True,
) -> ExpressionIndex:
    if format not in READERS:
        raise ValueError(f"unknown format {format!r}; known: {sorted(READERS)}")
    split = split if split is not None else DEFAULT_SPLITS[format]
    return READERS[format](root, split, skip_bad=skip_bad, verify_frames=verify_frames)


__all__ = [
    "READERS",
    "BadInputWarning",
    "DataFormatError",
    "ExpressionIndex",
    "VideoExpression",
    "read_dataset",
    "read_long_rvos",
    "read_mevis",
    "read_reasonvos",
    "read_ref_davis17",
    "read_ref_youtube_vos",
    "read_revos",
]
