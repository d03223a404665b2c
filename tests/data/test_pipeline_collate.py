"""Bucketed padding of per-example dicts."""

import numpy as np
import pytest

from jaxseg.data.collate import PadRule, bucket_length, collate


def test_pads_to_smallest_bucket_left_or_right():
    rules = {
        "ids": PadRule(axis=-1, buckets=(4, 8, 16), value=-1, side="left"),
        "pos": PadRule(axis=-1, buckets=(4, 8, 16), value=0),
    }
    ex = [
        {"ids": np.arange(5), "pos": np.ones((3, 5)), "name": np.str_("a")},
        {"ids": np.arange(2), "pos": np.ones((3, 2)), "name": np.str_("bb")},
    ]
    out = collate(ex, rules)
    assert out["ids"].shape == (2, 8) and out["pos"].shape == (2, 3, 8)
    np.testing.assert_array_equal(out["ids"][1], [-1] * 6 + [0, 1])
    np.testing.assert_array_equal(out["pos"][1, 0], [1, 1, 0, 0, 0, 0, 0, 0])
    assert list(out["name"]) == ["a", "bb"]
    assert bucket_length(9, (4, 8, 16)) == 16


def test_errors_name_the_key():
    with pytest.raises(ValueError, match="ids: length 20 exceeds the largest bucket 16"):
        collate([{"ids": np.arange(20)}], {"ids": PadRule(buckets=(16,))})
    with pytest.raises(ValueError, match="x: examples have different shapes"):
        collate([{"x": np.zeros(2)}, {"x": np.zeros(3)}], {})
    assert collate([{"p": np.zeros((5, 2))}], {"p": PadRule(multiple=4)})["p"].shape == (1, 8, 2)
