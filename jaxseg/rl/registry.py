"""Name -> function tables, so configs choose estimators by string.

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

_TABLES: Mapping[str, Mapping[str, Callable[..., Any]]] = {
    "advantage": ADVANTAGE_ESTIMATORS,
    "policy_loss": POLICY_LOSSES,
    "kl": KL_ESTIMATORS,
}


def get(kind: str, name: str) -> Callable[..., Any]:
    """Look up a function by kind ("advantage", "policy_loss", "kl") and name."""
    if kind not in _TABLES:
        raise KeyError(f"unknown registry kind {kind!r}; choose one of {sorted(_TABLES)}")
    table = _TABLES[kind]
    if name not in table:
        raise KeyError(f"unknown {kind} {name!r}; choose one of {sorted(table)}")
    return table[name]
