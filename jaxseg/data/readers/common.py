"""Shared reader steps: JSON loading and frame-list checks, each failing with file + field."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jaxseg.data.readers.errors import DataFormatError
from jaxseg.data.readers.images import image_size
from jaxseg.data.readers.records import frame_number


def load_json(path: str | Path, what: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DataFormatError(path, what, "file is missing") from None
    except json.JSONDecodeError as exc:
        raise DataFormatError(path, what, f"invalid JSON ({exc})") from None


def videos_of(meta: Any, path: str | Path) -> dict[str, Any]:
    """`meta["videos"]`, the top level of every meta_expressions.json."""
    if not isinstance(meta, dict) or not isinstance(meta.get("videos"), dict):
        raise DataFormatError(path, "videos", 'missing: expected {"videos": {name: {...}}}')
    return meta["videos"]


def field_of(mapping: Any, key: str, path: str | Path, field: str) -> Any:
    if not isinstance(mapping, dict) or key not in mapping:
        raise DataFormatError(path, f"{field}.{key}", "is missing")
    return mapping[key]


def text_of(mapping: Any, key: str, path: str | Path, field: str) -> str:
    """A required non-empty string (an expression's text): null, a number or "" is an error,
    never the query "None"."""
    value = field_of(mapping, key, path, field)
    if not isinstance(value, str) or not value.strip():
        raise DataFormatError(path, f"{field}.{key}", f"{value!r} is not a non-empty string")
    return value


def int_of(value: Any, path: str | Path, field: str) -> int:
    """An integer field: an int or a string of digits; "tall", 2.5, true or null are errors."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise DataFormatError(path, field, f"{value!r} is not an integer")
    if isinstance(value, str):
        text = value.strip()
        if not (text.isdigit() or (text[:1] == "-" and text[1:].isdigit())):
            raise DataFormatError(path, field, f"{value!r} is not an integer")
        return int(text)
    return value


def safe_name(name: Any, path: str | Path, field: str) -> str:
    """A file or folder name from a meta file, joined under the dataset root: it may hold
    '/' (ReVOS video names do) but not '..', an absolute path, or a NUL, which would read
    outside the dataset."""
    if not isinstance(name, (str, int)) or isinstance(name, bool):
        raise DataFormatError(path, field, f"{name!r} is not a name")
    text = str(name)
    parts = text.replace("\\", "/").split("/")
    if not text or "\x00" in text or os.path.isabs(text) or ".." in parts or text[:1] in "/\\":
        raise DataFormatError(
            path, field, f"{text!r} is not a name inside the dataset (absolute or '..')"
        )
    return text


def expressions_of(info: Any, path: str | Path, field: str) -> list[tuple[str, dict]]:
    """(exp_id, expression dict) pairs of a video: a mapping exp_id -> {...} (every released
    meta file), or a list of {...} whose position or "exp_id" is the id (Veason-R1's
    ReasonVOS variant). Anything else, or a non-mapping entry, is an error."""
    expressions = field_of(info, "expressions", path, field)
    if isinstance(expressions, dict):
        pairs = [(str(k), v) for k, v in expressions.items()]
    elif isinstance(expressions, list):
        pairs = [
            (str(e.get("exp_id", i)) if isinstance(e, dict) else str(i), e)
            for i, e in enumerate(expressions)
        ]
    else:
        raise DataFormatError(path, f"{field}.expressions", "is neither a mapping nor a list")
    for exp_id, exp in pairs:
        if not isinstance(exp, dict):
            raise DataFormatError(path, f'{field}.expressions["{exp_id}"]', "is not a mapping")
    return pairs


def frame_files(
    frames_dir: str | Path,
    names: Sequence[str],
    *,
    meta_path: str | Path,
    field: str,
    extension: str = ".jpg",
    verify: bool = True,
) -> tuple[tuple[str, ...], tuple[int, ...], int, int]:
    """(paths, absolute frame ids, height, width) of a video's frames.

    verify=True opens every frame header: a missing file, a non-image, or a frame whose
    size differs from the first frame is an error naming that frame.
    """
    if not isinstance(names, (list, tuple)) or len(names) == 0:
        raise DataFormatError(meta_path, field, "empty video: no frames listed")
    names = [safe_name(n, meta_path, f"{field}[{i}]") for i, n in enumerate(names)]
    video = Path(frames_dir).name
    if video == ".." or not video:
        raise DataFormatError(meta_path, field, f"{str(frames_dir)!r} is outside the dataset")
    paths = tuple(os.path.join(str(frames_dir), f"{name}{extension}") for name in names)
    ids = tuple(frame_number(str(n), i) for i, n in enumerate(names))
    height, width = image_size(paths[0], field=f"frame {names[0]} of {field}")
    if verify:
        for name, path in zip(names[1:], paths[1:]):
            size = image_size(path, field=f"frame {name} of {field}")
            if size != (height, width):
                raise DataFormatError(
                    path,
                    "frame",
                    f"size {list(size)} differs from the first frame's [{height}, {width}]",
                )
    return paths, ids, height, width


def listed_video(
    info: Any, frames_dir: str | Path, *, meta_path: str | Path, field: str, verify: bool = True
) -> tuple[list[str], list[tuple[str, dict]], tuple[str, ...], tuple[int, ...], int, int]:
    """A meta entry that lists its frames: (frame names, expressions, paths, absolute frame
    ids, height, width); errors name `field` of `meta_path`."""
    names = field_of(info, "frames", meta_path, field)
    expressions = expressions_of(info, meta_path, field)
    paths, ids, height, width = frame_files(
        frames_dir, names, meta_path=meta_path, field=f"{field}.frames", verify=verify
    )
    return names, expressions, paths, ids, height, width


def listed_frames(frames_dir: str | Path, extension: str = ".jpg") -> list[str]:
    """Sorted frame stems in a folder (for layouts whose meta file lists no frames)."""
    if not os.path.isdir(frames_dir):
        return []
    return sorted(
        name[: -len(extension)] for name in os.listdir(frames_dir) if name.endswith(extension)
    )
