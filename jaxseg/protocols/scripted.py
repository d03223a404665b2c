"""Scripted policies: `OraclePolicy` answers every step from the ground truth in the
protocol's exact output format; `RandomPolicy` answers with random valid or malformed text.

The oracle sees what a model sees (the latest observation's meta says which step and which
absolute frames were shown) plus the sample's annotations; its reasoning text states only
facts from those annotations, so its traces can serve as cold-start SFT data.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jaxseg.protocols.episode import Protocol
from jaxseg.protocols.policy import ChatPolicyBase, PolicyState, last_user_meta
from jaxseg.protocols.sample import EpisodeSample


class OraclePolicy(ChatPolicyBase):
    """GT-derived answers. samples: every sample the episodes may be about (looked up by
    the `sample_key` in the observation meta)."""

    def __init__(self, protocol: Protocol, samples: Sequence[EpisodeSample]):
        self.protocol = protocol
        self.samples = {s.key: s for s in samples}
        if len(self.samples) != len(samples):
            raise ValueError("OraclePolicy: sample keys must be unique")

    def _generate(self, state: PolicyState, indices, stop) -> list[str]:
        out = []
        for i in indices:
            conv = state.conversations[i]
            key = last_user_meta(conv).get("sample_key")
            if key not in self.samples:
                raise KeyError(f"OraclePolicy: episode {i} is about unknown sample {key!r}")
            out.append(self.protocol.oracle_turn(self.samples[key], conv))
        return out


class RandomPolicy(ChatPolicyBase):
    """Random answers (valid actions, wrong-but-valid actions, truncated or junk text),
    reproducible from `seed`."""

    def __init__(self, protocol: Protocol, seed: int = 0):
        self.protocol = protocol
        self.rng = np.random.default_rng(seed)

    def _generate(self, state: PolicyState, indices, stop) -> list[str]:
        return [self.protocol.random_turn(state.conversations[i], self.rng) for i in indices]
