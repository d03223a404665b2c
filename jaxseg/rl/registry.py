"""Name -> function tables, so configs choose estimators by string (`grpo.advantage`,
`grpo.policy_loss`, `grpo.kl_estimator`): the one place each name is resolved.

Explicit dicts (no import-time decorators): everything registered is visible here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from jaxseg.rl import advantages, aggregation, kl, policy_loss

ADVANTAGE_ESTIMATORS: Mapping[str, Callable[..., Any]] = {
    "grpo": advantages.grpo_advantages,
    "drgrpo": advantages.drgrpo_advantages,
    "rloo": advantages.rloo_advantages,
}
POLICY_LOSSES: Mapping[str, Callable[..., Any]] = {
    "ppo_clip": policy_loss.ppo_clip_loss,
    "on_policy": policy_loss.on_policy_loss,
}
KL_ESTIMATORS: Mapping[str, Callable[..., Any]] = {
    "k1": kl.kl_k1,
    "k2": kl.kl_k2,
    "k3": kl.kl_k3,
    "low_var_kl": kl.kl_k3,
}
AGGREGATION_MODES = aggregation.AGGREGATION_MODES
