"""The device smoke test's GRPO run (`bench/device_smoke.sh`): the quick demo's data and tiny
policy, GRPO only (no SFT), the tiny random SAM2 in its sidecar process on `device`.

    jaxseg train --config bench/device_smoke_config.py:device=cuda,steps=20 --workdir W \
        --stages data,grpo
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve()


def get_config(arg: str | None = None):
    sys.path.insert(0, str(HERE.parents[1] / "configs"))
    import synthetic_tiny

    from jaxseg.config import parse_arg

    a = parse_arg(arg, steps=20, device="cuda", seed=0, new_tokens=48)
    c = synthetic_tiny.get_config(f"quick=True,seed={a.seed}")
    c.grpo.require_sft = False
    c.grpo.steps = a.steps
    c.grpo.prompts_per_step = 2
    c.grpo.group_size = 4
    c.grpo.micro_batch = 8
    c.grpo.max_new_tokens = a.new_tokens
    c.grpo.checkpoint_every = a.steps
    c.grpo.eval_every = 0
    c.grpo.overlap_chunks = 2  # the sidecar's masks beside the next part's sampling
    c.segmenter.backend = "sam2"
    c.segmenter.config = {"model": "tiny", "device": a.device, "seed": 0}
    return c
