"""Test helpers: a policy that replays given turns, and a hand-made sample."""

import numpy as np

from jaxseg.protocols.policy import ChatPolicyBase
from jaxseg.protocols.sample import EpisodeSample


class ReplayPolicy(ChatPolicyBase):
    """Answers episode i's n-th turn with turns[i][n] (or turns[0][n] for all episodes if
    one script is given); runs out -> empty string."""

    def __init__(self, *scripts):
        self.scripts = [list(s) for s in scripts]
        self.calls: list[list[int]] = []

    def _generate(self, state, indices, stop):
        self.calls.append(list(indices))
        out = []
        for i in indices:
            script = self.scripts[i if len(self.scripts) > 1 else 0]
            n = len(state.turn_info[i])
            out.append(script[n] if n < len(script) else "")
        return out


def square_sample(
    num_frames=12, size=64, present=range(3, 9), stride=1, key="square", box=(20, 24, 36, 40)
):
    """One target (a red square at `box`, native pixels) visible in frames `present`;
    frame ids 0, stride, 2*stride, ... (Ref-YouTube-VOS keeps every 5th frame)."""
    frames = np.full((num_frames, size, size, 3), 90, np.uint8)
    masks = np.zeros((1, num_frames, size, size), bool)
    x1, y1, x2, y2 = box
    for t in present:
        masks[0, t, y1:y2, x1:x2] = True
        frames[t, y1:y2, x1:x2] = (220, 40, 40)
    return EpisodeSample(
        key=key,
        query="the red square",
        frames=frames,
        object_masks=masks,
        frame_ids=tuple(i * stride for i in range(num_frames)),
        description="the red square",
    )
