import pytest

from jaxseg.rl import advantages, kl, registry


def test_lookup():
    assert registry.get("advantage", "rloo") is advantages.rloo_advantages
    assert registry.get("kl", "low_var_kl") is kl.kl_k3


def test_unknown_names_list_choices():
    with pytest.raises(KeyError, match="drgrpo"):
        registry.get("advantage", "ppo")
    with pytest.raises(KeyError, match="registry kind"):
        registry.get("critic", "x")
