"""Data mixes for GRPO prompts: RCoT-Seg samples its stage data single : multi-target 3:1
(RCT-paper §4(c); seeds_methods.md §4(c)).

    batches = mixed_batches(source, size=16, seed=0, start_step=0, single_multi=(3, 1))

Each prompt is multi-target with probability m / (s + m) and is then drawn uniformly from
that group; null expressions are left out (RCoT-Seg has no zero-target data). Deterministic
per (seed, step), so a resumed run draws the same prompts.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

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


def mixed_batches(
    source, size: int, seed: int, start_step: int = 0, single_multi: Sequence[float] = (3, 1)
) -> Iterator[tuple[int, list[int]]]:
    """Endless (step, positions) with the single : multi-target ratio `single_multi`; a group
    that is empty in the split is skipped (the other fills the batch)."""
    single, multi = target_groups(source)
    if not single and not multi:
        raise ValueError(f"{source.root}: no expression with a target to mix")
    s, m = (float(v) for v in single_multi)
    if s < 0 or m < 0 or s + m <= 0:
        raise ValueError(f"single_multi must be two non-negative weights, got {single_multi}")
    p_multi = 0.0 if not multi else (1.0 if not single else m / (s + m))
    step = start_step
    while True:
        rng = np.random.default_rng([seed, step, 17])
        out = []
        for _ in range(size):
            group = multi if rng.random() < p_multi else single
            out.append(int(group[int(rng.integers(len(group)))]))
        yield step, out
        step += 1
