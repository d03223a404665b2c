"""Lazy per-object mask sources: nothing is decoded until a frame is asked for.

Three on-disk encodings cover the supported benchmarks:
- `RleMasks`: COCO RLE per object per frame in one JSON (ReVOS / MeViS `mask_dict.json`);
- `PaletteMasks`: one palette PNG per frame whose index is the object id
  (Ref-YouTube-VOS / DAVIS `Annotations/<video>/<frame>.png`);
- `BinaryPngMasks`: one grey PNG per object per frame, non-zero = object
  (ReasonVOS `Annotations/<src>_<video>_<obj>/`, Long-RVOS `Annotations/<video>/<obj>/`).

All return `[K, T, H, W]` bool for K objects and the T requested frame positions.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pycocotools.mask as mask_utils

from jaxseg.data.readers.errors import DataFormatError
from jaxseg.data.readers.images import load_binary_png, load_label_png


class MaskSource:
    """Base: `decode(positions)` -> [K, T, H, W] bool; `union(positions)` -> [T, H, W] bool."""

    num_objects: int
    num_frames: int
    height: int
    width: int

    def decode(self, positions: Sequence[int] | None = None) -> np.ndarray:
        raise NotImplementedError

    def union(self, positions: Sequence[int] | None = None) -> np.ndarray:
        masks = self.decode(positions)
        if masks.shape[0] == 0:
            return np.zeros(masks.shape[1:], dtype=bool)
        return masks.any(axis=0)

    def union_areas(self) -> np.ndarray:
        """[T] pixel count of the union of all objects on every frame."""
        return self.union().sum(axis=(1, 2))

    def _positions(self, positions: Sequence[int] | None) -> list[int]:
        if positions is None:
            return list(range(self.num_frames))
        out = [int(p) for p in positions]
        for p in out:
            if not 0 <= p < self.num_frames:
                raise IndexError(f"frame position {p} outside [0, {self.num_frames})")
        return out


def rle_counts(counts: Any) -> np.ndarray:
    """The run lengths of a COCO RLE: a list as is, a compressed string decoded as
    pycocotools' rleFrString does (vectorised). ValueError on a malformed string."""
    if isinstance(counts, (list, tuple)):
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in counts):
            raise ValueError("counts holds non-integers")
        return np.asarray(counts, dtype=np.int64)
    if isinstance(counts, bytes):
        counts = counts.decode("ascii", errors="replace")
    if not isinstance(counts, str):
        raise ValueError(f"counts is a {type(counts).__name__}, not a list or an RLE string")
    c = np.frombuffer(counts.encode("ascii", errors="replace"), np.uint8).astype(np.int64) - 48
    if c.size == 0:
        return np.zeros(0, np.int64)
    if ((c < 0) | (c > 63)).any():
        raise ValueError("counts string holds characters outside the RLE alphabet")
    more = (c & 0x20) != 0
    if more[-1]:
        raise ValueError("counts string ends inside a number (truncated)")
    ends = np.flatnonzero(~more)
    group = np.concatenate([[0], np.cumsum(~more[:-1])])
    starts = np.concatenate([[0], ends[:-1] + 1])
    j = np.arange(c.size) - starts[group]
    if j.max() > 11:
        raise ValueError("counts string holds a number too long for a run length")
    vals = np.zeros(ends.size, np.int64)
    np.add.at(vals, group, (c & 0x1F) << (5 * j))
    neg = (c[ends] & 0x10) != 0
    vals[neg] -= np.left_shift(1, 5 * (ends - starts + 1))[neg]
    out = vals.copy()
    out[3::2] = np.cumsum(vals[1::2])[1:]  # m > 2: x += cnts[m - 2]
    out[4::2] = np.cumsum(vals[2::2])[1:]
    return out


def _rle_for_pycocotools(rle: dict, height: int, width: int) -> dict:
    if isinstance(rle.get("counts"), list):  # uncompressed RLE
        return mask_utils.frPyObjects(rle, height, width)
    return rle


@dataclass(frozen=True, eq=False)
class RleMasks(MaskSource):
    """COCO RLE lists, one per object: `rles[k][t]` is a dict or None (object absent)."""

    rles: tuple[tuple[Any, ...], ...]
    height: int
    width: int
    num_frames: int
    path: str = "mask_dict.json"
    fields: tuple[str, ...] = ()

    @property
    def num_objects(self) -> int:
        return len(self.rles)

    def validate(self) -> None:
        """Check list lengths and RLE sizes without decoding; raise naming file and field."""
        for k, per_frame in enumerate(self.rles):
            field = self.fields[k] if k < len(self.fields) else f"object {k}"
            if not isinstance(per_frame, (list, tuple)):
                raise DataFormatError(self.path, field, "is not a list of per-frame RLEs")
            if len(per_frame) != self.num_frames:
                raise DataFormatError(
                    self.path,
                    field,
                    f"has {len(per_frame)} per-frame entries but the video has "
                    f"{self.num_frames} frames",
                )
            for t, rle in enumerate(per_frame):
                if rle is None:
                    continue
                if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
                    raise DataFormatError(
                        self.path, f"{field}[{t}]", "is not a COCO RLE {size, counts}"
                    )
                try:
                    size = [int(v) for v in rle["size"]]
                except (TypeError, ValueError):
                    raise DataFormatError(
                        self.path, f"{field}[{t}].size", f"is not [height, width]: {rle['size']!r}"
                    ) from None
                if size != [self.height, self.width]:
                    raise DataFormatError(
                        self.path,
                        f"{field}[{t}].size",
                        f"RLE size {size} disagrees with the frame size "
                        f"[{self.height}, {self.width}]",
                    )
                # pycocotools decodes a short RLE into uninitialised memory and a long one
                # over the next frame's: the runs must cover the frame exactly
                try:
                    counts = rle_counts(rle["counts"])
                except ValueError as err:
                    raise DataFormatError(self.path, f"{field}[{t}].counts", str(err)) from None
                if (counts < 0).any():
                    raise DataFormatError(
                        self.path, f"{field}[{t}].counts", "holds a negative run length"
                    )
                total = int(counts.sum())
                if total != self.height * self.width:
                    raise DataFormatError(
                        self.path,
                        f"{field}[{t}].counts",
                        f"runs cover {total} pixels but the frame has {self.height} x "
                        f"{self.width} = {self.height * self.width} (truncated or corrupted RLE)",
                    )

    def decode(self, positions: Sequence[int] | None = None) -> np.ndarray:
        pos = self._positions(positions)
        out = np.zeros((self.num_objects, len(pos), self.height, self.width), dtype=bool)
        for k, per_frame in enumerate(self.rles):
            present = [(i, t) for i, t in enumerate(pos) if per_frame[t] is not None]
            if not present:
                continue
            rles = [_rle_for_pycocotools(per_frame[t], self.height, self.width) for _, t in present]
            try:
                with warnings.catch_warnings():  # pycocotools' numpy-2 copy= deprecation
                    warnings.simplefilter("ignore", DeprecationWarning)
                    decoded = mask_utils.decode(rles)  # [H, W, N] in one call
            except Exception as exc:  # pycocotools raises bare Exceptions on bad counts
                field = self.fields[k] if k < len(self.fields) else f"object {k}"
                raise DataFormatError(
                    self.path, f"{field}[{present[0][1]}..].counts", f"undecodable RLE ({exc})"
                ) from None
            out[k, [i for i, _ in present]] = np.moveaxis(decoded, -1, 0).astype(bool)
        return out

    def union_areas(self) -> np.ndarray:
        if self.num_objects == 1:  # exact, and no decode needed
            return np.array(
                [
                    0
                    if r is None
                    else int(mask_utils.area(_rle_for_pycocotools(r, self.height, self.width)))
                    for r in self.rles[0]
                ],
                dtype=np.int64,
            )
        return super().union_areas()


@dataclass(frozen=True, eq=False)
class PaletteMasks(MaskSource):
    """Palette PNG per frame (None where the frame is not annotated); object k = index `label_ids[k]`."""

    png_paths: tuple[str | None, ...]
    label_ids: tuple[int, ...]
    height: int
    width: int

    @property
    def num_objects(self) -> int:
        return len(self.label_ids)

    @property
    def num_frames(self) -> int:
        return len(self.png_paths)

    def decode(self, positions: Sequence[int] | None = None) -> np.ndarray:
        pos = self._positions(positions)
        out = np.zeros((self.num_objects, len(pos), self.height, self.width), dtype=bool)
        ids = np.asarray(self.label_ids, dtype=np.int64)
        for i, t in enumerate(pos):
            path = self.png_paths[t]
            if path is None:
                continue
            labels = load_label_png(path, field="annotation")
            if labels.shape != (self.height, self.width):
                raise DataFormatError(
                    path,
                    "annotation",
                    f"size {list(labels.shape)} disagrees with the frame size "
                    f"[{self.height}, {self.width}]",
                )
            out[:, i] = labels[None] == ids[:, None, None]
        return out


@dataclass(frozen=True, eq=False)
class BinaryPngMasks(MaskSource):
    """`png_paths[k][t]`: grey PNG of object k on frame t, or None (object absent there)."""

    png_paths: tuple[tuple[str | None, ...], ...]
    height: int
    width: int

    @property
    def num_objects(self) -> int:
        return len(self.png_paths)

    @property
    def num_frames(self) -> int:
        return len(self.png_paths[0]) if self.png_paths else 0

    def decode(self, positions: Sequence[int] | None = None) -> np.ndarray:
        pos = self._positions(positions)
        out = np.zeros((self.num_objects, len(pos), self.height, self.width), dtype=bool)
        for k, per_frame in enumerate(self.png_paths):
            for i, t in enumerate(pos):
                path = per_frame[t]
                if path is None:
                    continue
                mask = load_binary_png(path, field="annotation")
                if mask.shape != (self.height, self.width):
                    raise DataFormatError(
                        path,
                        "annotation",
                        f"size {list(mask.shape)} disagrees with the frame size "
                        f"[{self.height}, {self.width}]",
                    )
                out[k, i] = mask
        return out
