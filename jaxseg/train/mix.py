"""Data mixes for GRPO prompts: RCoT-Seg samples its stage data single : multi-target 3:1
(RCoT-Seg arXiv 2605.07334 (training)).

    order = MixedSteps.of(source, size=16, seed=0, single_multi=(3, 1))   # a grain Map
    step, positions = order.map(step)     # what jaxseg.data.pipeline.step_feed reads

Each prompt is multi-target with probability m / (s + m) and is then drawn uniformly from
that group; null expressions are left out (RCoT-Seg has no zero-target data). Deterministic
per (seed, step), so a resumed run draws the same prompts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import grain
import numpy as np


def target_groups(source) -> tuple[list[int], list[int]]:
    """(single-target positions, multi-target positions) of a `SampleSource`, from the
    records alone (no frames decoded)."""
    single, multi = [], []
    for i in range(len(source)):
        n = len(source.record(i).target_ids)
        if n == 1:
            single.append(i)
        elif n > 1:
            multi.append(i)
    return single, multi


@dataclasses.dataclass(frozen=True)
class MixedSteps(grain.transforms.Map):
    """step -> (step, `size` positions) drawn single : multi-target at `p_multi` (numpy rng
    [seed, step, 17]); `of` builds it from a source."""

    single: tuple[int, ...]
    multi: tuple[int, ...]
    size: int
    seed: int
    p_multi: float

    @classmethod
    def of(cls, source, size: int, seed: int, single_multi: Sequence[float] = (3, 1)) -> MixedSteps:
        """The mix of `source` at ratio `single_multi`; a group that is empty in the split is
        skipped (the other fills the batch)."""
        single, multi = target_groups(source)
        if not single and not multi:
            raise ValueError(f"{source.root}: no expression with a target to mix")
        s, m = (float(v) for v in single_multi)
        if s < 0 or m < 0 or s + m <= 0:
            raise ValueError(f"single_multi must be two non-negative weights, got {single_multi}")
        p_multi = 0.0 if not multi else (1.0 if not single else m / (s + m))
        return cls(tuple(single), tuple(multi), int(size), int(seed), p_multi)

    def map(self, step: int) -> tuple[int, list[int]]:
        rng = np.random.default_rng([self.seed, int(step), 17])
        out = []
        for _ in range(self.size):
            group = self.multi if rng.random() < self.p_multi else self.single
            out.append(int(group[int(rng.integers(len(group)))]))
        return int(step), out
