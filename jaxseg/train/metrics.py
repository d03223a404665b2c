"""Run metrics through one writer interface: JSONL (the source of truth), TensorBoard and
Weights & Biases, chosen by ``metrics.writers`` (``("jsonl", "tensorboard", "wandb")``), the
way clu's / tunix's metric writers and TRL's ``report_to`` work.

JSONL is always written (reports, resume and ``read_metrics`` read it), flushed per record, so
a crash loses nothing already logged, and a resumed run keeps appending to the same file after
`rewind` dropped the records of the steps it runs again (records carry their step; readers
keep the last record of each (kind, step)). In a bucket (``gs://...``), where an object cannot
be appended to, the file is rewritten whole per record. TensorBoard events go to
``<stage>/tb`` (for a bucket: a local folder uploaded on close). W&B: one run per stage
(``<run name>/<stage>``, grouped by run) in ``<stage>/wandb``; ``metrics.wandb.mode``
``offline`` (default; ``wandb sync`` uploads it later), ``online`` or ``disabled``.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jaxseg.paths import as_path, is_remote, upload


def _clean(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsWriter:
    """One sink of metric records: ``write(kind, step, record)``, ``close()``."""

    def write(self, kind: str, step: int, record: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class JsonlWriter(MetricsWriter):
    """``<dir>/metrics.jsonl``: one JSON line per record, flushed per record."""

    def __init__(self, directory):
        self.path = as_path(directory) / "metrics.jsonl"
        self._lines: list[str] | None = None  # a bucket's file: its text, rewritten whole
        self._file = None
        if is_remote(directory):
            self._lines = self.path.read_text().splitlines(True) if self.path.exists() else []
        else:
            self.path = Path(self.path)
            self._file = self.path.open("a")

    def write(self, kind: str, step: int, record: Mapping[str, Any]) -> None:
        line = json.dumps(dict(record)) + "\n"
        if self._lines is not None:
            self._lines.append(line)
            self.path.write_text("".join(self._lines))
            return
        self._file.write(line)
        self._file.flush()

    def rewind(self, next_step: int) -> int:
        """Drops the records of steps >= `next_step` (a resumed stage runs them again) and a
        torn last line (a killed writer); returns how many lines went. Atomic: the kept
        lines are written to a temporary file that replaces metrics.jsonl (in a bucket the
        object is rewritten whole, which is atomic there)."""
        if self._file is not None:
            self._file.close()
        lines = self._lines if self._lines is not None else self.path.open().readlines()
        kept, dropped = [], 0
        for line in lines:
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
        if self._lines is not None:
            self._lines = kept
            if dropped:
                self.path.write_text("".join(kept))
            return dropped
        if dropped:
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text("".join(kept))
            tmp.replace(self.path)
        self._file = self.path.open("a")
        return dropped

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


class TensorBoardWriter(MetricsWriter):
    """Scalars as ``kind/name`` in ``<dir>/tb`` (tensorboardX)."""

    def __init__(self, directory):
        from tensorboardX import SummaryWriter

        self._target = as_path(directory) / "tb"
        remote = is_remote(directory)
        self._local = Path(tempfile.mkdtemp(prefix="jaxseg-tb-")) if remote else Path(self._target)
        self._tb = SummaryWriter(str(self._local))

    def write(self, kind: str, step: int, record: Mapping[str, Any]) -> None:
        for k, v in record.items():
            if k not in ("kind", "step", "time") and isinstance(v, int | float):
                self._tb.add_scalar(f"{kind}/{k}", v, int(step))

    def close(self) -> None:
        self._tb.close()
        if is_remote(self._target):
            upload(self._local, self._target)
            shutil.rmtree(self._local, ignore_errors=True)


class WandbWriter(MetricsWriter):
    """Scalars as ``kind/name`` at ``step`` in a Weights & Biases run (offline by default)."""

    def __init__(self, directory, options: Mapping[str, Any] | None = None):
        import wandb

        o = dict(options or {})
        target = as_path(directory)
        run_name = o.get("name") or target.parent.name
        self._target = target / "wandb"
        remote = is_remote(directory)
        self._local = (
            Path(tempfile.mkdtemp(prefix="jaxseg-wandb-")) if remote else Path(self._target)
        )
        self._local.mkdir(parents=True, exist_ok=True)
        self._run = wandb.init(
            project=o.get("project") or "jaxseg",
            entity=o.get("entity") or None,
            group=run_name,
            name=f"{run_name}/{target.name}",
            dir=str(self._local),
            mode=o.get("mode") or "offline",
            reinit="create_new",
        )

    def write(self, kind: str, step: int, record: Mapping[str, Any]) -> None:
        values = {
            f"{kind}/{k}": v
            for k, v in record.items()
            if k not in ("kind", "step", "time") and isinstance(v, int | float)
        }
        if values:
            self._run.log(values, step=int(step))

    def close(self) -> None:
        self._run.finish()
        if is_remote(self._target):
            import wandb

            wandb.teardown()  # finish() may return before wandb-core has flushed the run file
            upload(self._local, self._target)
            shutil.rmtree(self._local, ignore_errors=True)


WRITERS = ("jsonl", "tensorboard", "wandb")


class MetricsLogger:
    """``log(kind, step, metrics)`` -> every writer: ``<dir>/metrics.jsonl`` (always),
    TensorBoard ``kind/name`` and W&B as ``writers`` says."""

    def __init__(
        self,
        directory,
        *,
        tensorboard: bool = True,
        writers: Sequence[str] | None = None,
        wandb: Mapping[str, Any] | None = None,
    ):
        if writers is None:
            writers = ("jsonl", "tensorboard") if tensorboard else ("jsonl",)
        unknown = [w for w in writers if w not in WRITERS]
        if unknown:
            raise ValueError(f"metrics.writers: unknown {unknown}; choose from {WRITERS}")
        self.directory = as_path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._jsonl = JsonlWriter(self.directory)
        self.path = self._jsonl.path
        self.writers: list[MetricsWriter] = [self._jsonl]
        if "tensorboard" in writers:
            self.writers.append(TensorBoardWriter(self.directory))
        if "wandb" in writers:
            self.writers.append(WandbWriter(self.directory, wandb))

    @classmethod
    def from_config(cls, directory, config) -> MetricsLogger:
        """The writers of ``config.metrics`` (absent: JSONL + TensorBoard)."""
        m = config.get("metrics")
        if m is None:
            return cls(directory)
        wandb = dict(m.get("wandb", {}) or {})
        return cls(directory, writers=tuple(m.get("writers", WRITERS[:2])), wandb=wandb)

    def log(self, kind: str, step: int, metrics: Mapping[str, Any]) -> None:
        record = {"kind": kind, "step": int(step), "time": time.time()}
        record.update({k: _clean(v) for k, v in metrics.items()})
        for writer in self.writers:
            writer.write(kind, int(step), record)

    def rewind(self, next_step: int) -> int:
        """Drops metrics.jsonl's records of steps >= `next_step` (JsonlWriter.rewind)."""
        return self._jsonl.rewind(next_step)

    def close(self) -> None:
        for writer in self.writers:
            writer.close()

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_metrics(path: str | Path, kind: str | None = None) -> list[dict[str, Any]]:
    """Records of ``kind`` in step order; for a step logged twice (a resumed run), the last."""
    latest: dict[tuple[str, int], dict[str, Any]] = {}
    with as_path(path).open() as f:
        for line in f:
            if not line.strip():
                continue
            rec = json.loads(line)
            if kind is None or rec["kind"] == kind:
                latest[(rec["kind"], rec["step"])] = rec
    return [latest[k] for k in sorted(latest, key=lambda k: (k[1], k[0]))]
