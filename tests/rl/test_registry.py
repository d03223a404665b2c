import pytest
from ml_collections import ConfigDict

from jaxseg.rl import advantages, kl, objective, policy_loss, registry
from jaxseg.train.stages import advantage_of


def test_tables():
    assert registry.ADVANTAGE_ESTIMATORS["rloo"] is advantages.rloo_advantages
    assert registry.KL_ESTIMATORS["low_var_kl"] is kl.kl_k3
    assert registry.POLICY_LOSSES["on_policy"] is policy_loss.on_policy_loss
    assert objective.KL_ESTIMATORS is registry.KL_ESTIMATORS


def test_the_trainer_resolves_names_through_the_registry():
    assert advantage_of(ConfigDict(dict(advantage="rloo"))) is advantages.rloo_advantages
    with pytest.raises(ValueError, match="drgrpo"):
        advantage_of(ConfigDict(dict(advantage="ppo")))
