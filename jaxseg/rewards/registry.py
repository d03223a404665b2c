"""Composite rewards by name, with their documented ranges (property tests check them)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from jaxseg.rewards import null, o3, rcot, revseg, veason


@dataclasses.dataclass(frozen=True)
class RewardSpec:
    """A composite reward, its attainable range and where it comes from."""

    name: str
    fn: Callable[..., Any]
    low: float
    high: float
    source: str


REWARDS: dict[str, RewardSpec] = {
    spec.name: spec
    for spec in (
        RewardSpec(
            "veason",
            veason.veason_reward,
            0.0,
            veason.MAX_REWARD,
            "Veason-R1 arXiv 2508.11538, rewards",
        ),
        RewardSpec(
            "rcot_aks", rcot.aks_reward, 0.0, rcot.AKS_MAX, "RCoT-Seg arXiv 2605.07334, rewards AKS"
        ),
        RewardSpec(
            "rcot_ktg", rcot.ktg_reward, 0.0, rcot.KTG_MAX, "RCoT-Seg arXiv 2605.07334, rewards KTG"
        ),
        RewardSpec(
            "o3",
            o3.o3_reward,
            o3.MIN_REWARD,
            o3.MAX_REWARD_INTENDED,
            "VideoSEG-O3 arXiv 2606.06819, rewards",
        ),
        RewardSpec(
            "revseg", revseg.revseg_reward, 0.0, 3.0, "ReVSeg arXiv 2512.02835, rewards, inferred"
        ),
        RewardSpec("null", null.null_reward, -1.0, 1.0, "jaxseg zero-target term"),
    )
}


def get(name: str) -> RewardSpec:
    """Look up a composite reward by name."""
    if name not in REWARDS:
        raise KeyError(f"unknown reward {name!r}; choose one of {sorted(REWARDS)}")
    return REWARDS[name]
