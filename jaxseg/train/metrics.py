"""Run metrics: one JSON line per record (the source of truth) mirrored to TensorBoard.

JSONL is appended and flushed per record, so a crash loses nothing already logged, and a
resumed run keeps appending to the same file after `rewind` dropped the records of the steps
it runs again (records carry their step; readers keep the last record of each (kind, step)).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def _clean(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsLogger:
    """``log(kind, step, metrics)`` -> ``<dir>/metrics.jsonl`` and TensorBoard ``kind/name``."""

    def __init__(self, directory: str | Path, *, tensorboard: bool = True):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / "metrics.jsonl"
        self._file = self.path.open("a")
        self._tb = None
        if tensorboard:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(str(self.directory / "tb"))

    def log(self, kind: str, step: int, metrics: Mapping[str, Any]) -> None:
        record = {"kind": kind, "step": int(step), "time": time.time()}
        record.update({k: _clean(v) for k, v in metrics.items()})
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._tb is not None:
            for k, v in record.items():
                if k not in ("kind", "step", "time") and isinstance(v, int | float):
                    self._tb.add_scalar(f"{kind}/{k}", v, int(step))

    def rewind(self, next_step: int) -> int:
        """Drops the records of steps >= `next_step` (a resumed stage runs them again) and a
        torn last line (a killed writer); returns how many lines went. Atomic: the kept
        lines are written to a temporary file that replaces metrics.jsonl."""
        self._file.close()
        kept, dropped = [], 0
        with self.path.open() as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    keep = int(rec["step"]) < next_step
                except (ValueError, KeyError, TypeError):
                    keep = False  # a line cut by a crash
                if keep:
                    kept.append(line if line.endswith("\n") else line + "\n")
                else:
                    dropped += 1
        if dropped:
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text("".join(kept))
            tmp.replace(self.path)
        self._file = self.path.open("a")
        return dropped

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_metrics(path: str | Path, kind: str | None = None) -> list[dict[str, Any]]:
    """Records of ``kind`` in step order; for a step logged twice (a resumed run), the last."""
    latest: dict[tuple[str, int], dict[str, Any]] = {}
    with Path(path).open() as f:
        for line in f:
            if not line.strip():
                continue
            rec = json.loads(line)
            if kind is None or rec["kind"] == kind:
                latest[(rec["kind"], rec["step"])] = rec
    return [latest[k] for k in sorted(latest, key=lambda k: (k[1], k[0]))]
