"""Non-finite guard of a training stage: never train on (or checkpoint) NaN.

`train_step` leaves model and optimizer untouched when a step's loss or gradient norm is not
finite (``metrics["skipped"] == 1``). `NonFiniteGuard` counts those skipped updates, adds the
counts to the step's metrics, says whether everything since the last checkpoint was finite
(the checkpoint's ``finite`` flag, which keep-N rotation reads) and aborts the stage with
`NonFiniteError` (the command exits non-zero) after more than ``max_consecutive`` skipped
steps in a row: ``max_consecutive=0`` aborts at the first one.
"""

from __future__ import annotations

import math
from collections.abc import MutableMapping
from typing import Any


class NonFiniteError(RuntimeError):
    """Too many consecutive training steps with a non-finite loss or gradient norm."""


class NonFiniteGuard:
    def __init__(self, stage: str, max_consecutive: int, *, skipped_before: int = 0):
        if max_consecutive < 0:
            raise ValueError(f"{stage}.max_nonfinite must be >= 0, got {max_consecutive}")
        self.stage = stage
        self.max_consecutive = int(max_consecutive)
        self.total = int(skipped_before)  # carried over a resume through the checkpoint meta
        self.consecutive = 0
        self.finite_since_save = True

    def check(self, step: int, metrics: MutableMapping[str, Any]) -> None:
        """Counts step `step` (after `train_step`); raises once the limit is passed."""
        skipped = bool(metrics.get("skipped", 0.0)) or not all(
            math.isfinite(float(metrics[k])) for k in ("loss", "grad_norm") if k in metrics
        )
        if skipped:
            self.total += 1
            self.consecutive += 1
            self.finite_since_save = False
        else:
            self.consecutive = 0
        metrics["nonfinite_skipped"] = self.total
        if self.consecutive > self.max_consecutive:
            raise NonFiniteError(
                f"{self.stage} step {step}: loss={metrics.get('loss')} "
                f"grad_norm={metrics.get('grad_norm')}; {self.consecutive} consecutive "
                f"non-finite step(s) (limit {self.stage}.max_nonfinite={self.max_consecutive}); "
                "no update was applied and no checkpoint of them was written. The newest "
                "finite checkpoint is intact; check the data, the learning rate, or the "
                "checkpoint this stage resumed from."
            )

    def checkpoint_meta(self) -> dict[str, Any]:
        """Fields for the checkpoint about to be saved; resets the since-save flag."""
        meta = {"finite": self.finite_since_save, "nonfinite_skipped": self.total}
        self.finite_since_save = True
        return meta
