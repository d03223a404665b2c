"""GRPO prompt mixes (RCoT-Seg: single : multi-target 3:1) and per-stage prompt streams."""

from types import SimpleNamespace

import numpy as np
import pytest

from jaxseg.train.mix import mixed_batches, target_groups
from jaxseg.train.stages import GrpoStage


class FakeSource:
    """Records with 0 (null), 1 or 2 targets; `batches` like SampleSource's."""

    root = "fake"

    def __init__(self, counts):
        self.counts = counts

    def __len__(self):
        return len(self.counts)

    def record(self, i):
        return SimpleNamespace(target_ids=tuple(range(self.counts[i])))

    def batches(self, size, seed, start):
        step = start
        while True:
            rng = np.random.default_rng([seed, step])
            yield step, [int(i) for i in rng.integers(0, len(self), size)]
            step += 1


def test_single_multi_ratio_and_determinism():
    src = FakeSource([1] * 30 + [2] * 5 + [0] * 5)
    single, multi = target_groups(src)
    assert len(single) == 30 and len(multi) == 5
    it = mixed_batches(src, 400, seed=0, single_multi=(3, 1))
    _, pos = next(it)
    frac = np.mean([src.counts[p] > 1 for p in pos])
    assert 0.18 < frac < 0.32 and all(src.counts[p] > 0 for p in pos)  # ~1/4, no null
    again = mixed_batches(src, 400, seed=0, start_step=0, single_multi=(3, 1))
    assert next(again)[1] == pos
    resumed = mixed_batches(src, 400, seed=0, start_step=1, single_multi=(3, 1))
    next(it)
    assert next(resumed)[1] == next(mixed_batches(src, 400, 0, 1, (3, 1)))[1]
    with pytest.raises(ValueError):
        next(mixed_batches(FakeSource([0, 0]), 4, 0))


def test_stages_draw_their_own_prompts():
    src = FakeSource([1] * 20 + [2] * 20)
    streams = {
        name: next(GrpoStage(name, name, "sft", None, None, mix).batches(src, 16, 0, 0))[1]
        for name, mix in (("aks", (3, 1)), ("ktg", (3, 1)))
    }
    assert streams["aks"] != streams["ktg"]
    plain = GrpoStage("grpo", "grpo", "sft", None, None)
    assert next(plain.batches(src, 8, 0, 0))[1] == next(src.batches(8, 0, 0))[1]
