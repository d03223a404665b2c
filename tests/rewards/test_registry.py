import pytest

from jaxseg.rewards import o3, registry


def test_every_reward_is_listed_with_a_range():
    assert set(registry.REWARDS) == {"veason", "rcot_aks", "rcot_ktg", "o3", "revseg", "null"}
    for spec in registry.REWARDS.values():
        assert spec.low < spec.high and callable(spec.fn) and spec.source
    assert registry.get("o3").fn is o3.o3_reward


def test_unknown_name():
    with pytest.raises(KeyError, match="veason"):
        registry.get("seg_zero")
