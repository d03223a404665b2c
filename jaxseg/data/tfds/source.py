"""Random-access (video, expression) records over a prepared ReVOS / MeViS tfds dataset.

`TfdsExpressionSource` is a grain-compatible source (`__len__`, `__getitem__`) yielding the
same `VideoExpression` records as the on-disk readers, with frames decoded from the stored
JPEG bytes and masks from the stored RLE. It pickles (for grain workers): the tfds data
source is re-opened lazily in each process.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxseg.data.readers.images import decode_rgb_bytes
from jaxseg.data.readers.masks import RleMasks
from jaxseg.data.readers.records import VideoExpression


@dataclasses.dataclass(frozen=True, eq=False)
class JpegFrames:
    """Frames of one video as encoded bytes; `load(t)` -> [H, W, 3] uint8."""

    jpegs: tuple[bytes, ...]
    label: str

    def load(self, t: int) -> np.ndarray:
        return decode_rgb_bytes(self.jpegs[t], f"{self.label} frame {t}")


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class TfdsExpressionSource(Sequence[VideoExpression]):
    """name: "revos" / "mevis"; data_dir: where `prepare` wrote it; split: e.g. "valid"."""

    def __init__(self, name: str, data_dir: str | Path, split: str):
        from jaxseg.data.tfds.builders import BUILDERS

        self.name, self.data_dir, self.split = name, str(data_dir), split
        builder = BUILDERS[name](data_dir=self.data_dir, file_format="array_record")
        counts = builder.info.metadata.get(f"{split}/expressions_per_video")
        if counts is None:
            raise KeyError(f"{name}: split {split!r} not prepared under {data_dir}")
        self._index = [(v, e) for v, n in enumerate(counts) for e in range(n)]
        self._source = None

    def _data_source(self):
        if self._source is None:
            from jaxseg.data.tfds.builders import BUILDERS

            builder = BUILDERS[self.name](data_dir=self.data_dir, file_format="array_record")
            self._source = builder.as_data_source(split=self.split)
        return self._source

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_source"] = None
        return state

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        video_index, exp_index = self._index[i]
        ex = self._data_source()[video_index]
        video_id = _text(ex["video_id"])
        names = tuple(_text(n) for n in ex["frame_names"])
        h, w, t = int(ex["height"]), int(ex["width"]), len(names)
        exp = json.loads(_text(ex["expressions_json"]))[exp_index]
        masks_json = json.loads(_text(ex["masks_json"]))
        where = f"tfds:{self.name}/{self.split}/{video_id}"
        masks = None
        if exp["has_masks"]:
            masks = RleMasks(
                tuple(tuple(masks_json[a]) for a in exp["target_ids"]),
                h,
                w,
                t,
                where,
                tuple(f'["{a}"]' for a in exp["target_ids"]),
            )
        fg = json.loads(_text(ex["foreground_json"]))
        foreground = None if fg is None else RleMasks(tuple(tuple(o) for o in fg), h, w, t, where)
        return VideoExpression(
            dataset=self.name,
            video_id=video_id,
            exp_id=exp["exp_id"],
            expression=exp["exp"],
            frame_names=names,
            frame_paths=tuple(f"{where}/{n}" for n in names),
            frame_ids=tuple(int(x) for x in ex["frame_ids"]),
            height=h,
            width=w,
            target_ids=tuple(exp["target_ids"]),
            type_id=int(exp["type_id"]),
            masks=masks,
            foreground=foreground,
            extras=exp["extras"],
            frame_store=JpegFrames(tuple(bytes(b) for b in ex["frames_jpeg"]), where),
        )
