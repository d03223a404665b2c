"""Scripted policies: `OraclePolicy` answers every step from the ground truth in the
protocol's exact output format; `RandomPolicy` answers with random valid or malformed text;
`PriorPolicy` answers in the same format with what a policy that ignores the video would:
the training targets' mean box, on the first frame it is shown, never "no target" (the
trivial prior a learnt policy must beat).

The oracle sees what a model sees (the latest observation's meta says which step and which
absolute frames were shown) plus the sample's annotations; its reasoning text states only
facts from those annotations, so its traces can serve as cold-start SFT data.
"""

from __future__ import annotations

import dataclasses
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


def mean_target_box(samples: Sequence[EpisodeSample]) -> np.ndarray:
    """The mean of the targets' boxes `[4]` (x1, y1, x2, y2 as fractions of the frame) over
    every frame of `samples` where a target is visible (one box per frame: the union of the
    targets'); training samples, so nothing of the evaluation's answers is used."""
    boxes = []
    for sample in samples:
        h, w = sample.height, sample.width
        for position in range(len(sample.frame_ids)):
            b = sample.boxes_at(position)
            if len(b):
                x1, y1 = b[:, 0].min() / w, b[:, 1].min() / h
                boxes.append([x1, y1, b[:, 2].max() / w, b[:, 3].max() / h])
    if not boxes:
        raise ValueError("mean_target_box: no target is visible in any sample")
    return np.mean(np.asarray(boxes, np.float64), axis=0)


def prior_sample(sample: EpisodeSample, box: np.ndarray) -> EpisodeSample:
    """`sample` with its targets replaced by one object filling the fractional `box` in every
    frame: the oracle's answers on it are the box prior's."""
    t, h, w = sample.frames.shape[:3]
    mask = np.zeros((1, t, h, w), bool)
    x1, y1, x2, y2 = box
    r0, r1 = int(np.floor(y1 * h)), max(int(np.ceil(y2 * h)), int(np.floor(y1 * h)) + 1)
    c0, c1 = int(np.floor(x1 * w)), max(int(np.ceil(x2 * w)), int(np.floor(x1 * w)) + 1)
    mask[:, :, r0:r1, c0:c1] = True
    return dataclasses.replace(sample, object_masks=mask, description=None)


class PriorPolicy(OraclePolicy):
    """The oracle on `prior_sample`s: every answer in the protocol's format, about the fixed
    `box` (e.g. `mean_target_box` of the training split) on the first frame shown."""

    def __init__(self, protocol: Protocol, samples: Sequence[EpisodeSample], box: np.ndarray):
        super().__init__(protocol, [prior_sample(s, box) for s in samples])
