"""GRPO prompt mixes (RCoT-Seg: single : multi-target 3:1) and per-stage prompt streams."""

from types import SimpleNamespace

import numpy as np
import pytest

from jaxseg.data.pipeline import ShuffledSteps, step_feed
from jaxseg.train.mix import MixedSteps, target_groups
from jaxseg.train.stages import GrpoStage


class FakeSource:
    """Records with 0 (null), 1 or 2 targets."""

    root = "fake"

    def __init__(self, counts):
        self.counts = counts

    def __len__(self):
        return len(self.counts)

    def record(self, i):
        return SimpleNamespace(target_ids=tuple(range(self.counts[i])))


def test_single_multi_ratio_and_determinism():
    src = FakeSource([1] * 30 + [2] * 5 + [0] * 5)
    single, multi = target_groups(src)
    assert len(single) == 30 and len(multi) == 5
    order = MixedSteps.of(src, 400, seed=0, single_multi=(3, 1))
    step, pos = order.map(0)
    frac = np.mean([src.counts[p] > 1 for p in pos])
    assert step == 0 and 0.18 < frac < 0.32 and all(src.counts[p] > 0 for p in pos)  # ~1/4
    assert MixedSteps.of(src, 400, seed=0, single_multi=(3, 1)).map(0)[1] == pos
    assert order.map(1)[1] != pos
    # through a grain feed, resumed at step 1: the same prompts as the unbroken stream
    load = lambda _, idx: idx  # noqa: E731
    it = iter(step_feed(order, load, steps=3))
    unbroken = [next(it).positions for _ in range(3)]
    resumed = iter(step_feed(order, load, steps=3))
    resumed.set_state({"next_index": 1})
    assert [next(resumed).positions for _ in range(2)] == unbroken[1:]
    with pytest.raises(ValueError, match="no expression with a target"):
        MixedSteps.of(FakeSource([0, 0]), 4, 0)
    with pytest.raises(ValueError, match="non-negative"):
        MixedSteps.of(src, 4, 0, single_multi=(-1, 1))


def test_stages_draw_their_own_prompts():
    src = FakeSource([1] * 20 + [2] * 20)
    streams = {
        name: GrpoStage(name, name, "sft", None, None, mix).order(src, 16, 0).map(0)[1]
        for name, mix in (("aks", (3, 1)), ("ktg", (3, 1)))
    }
    assert streams["aks"] != streams["ktg"]
    plain = GrpoStage("grpo", "grpo", "sft", None, None)
    assert plain.order(src, 8, 0).map(0) == ShuffledSteps(len(src), 8, 0).map(0)
