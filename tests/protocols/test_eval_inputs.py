"""Evaluation sees only what a user has. For every protocol's evaluation
config (the 3B real-run configs through `make_eval_protocol`, and the [SEG] route), the
policy's inputs -- every message it is given, frames as bytes, text, and the environment's
bookkeeping -- are byte-identical when the sample's ground truth is scrambled."""

import dataclasses

import numpy as np
import pytest

from jaxseg.config import load_config
from jaxseg.protocols.episode import play_episodes
from jaxseg.protocols.registry import EVAL_DEFAULTS, make_eval_protocol, make_protocol
from jaxseg.protocols.scripted import RandomPolicy

from .helpers import ReplayPolicy


def scrambled(sample, seed: int):
    """The same video and query with unrelated ground truth (masks, object count,
    description, type, extras)."""
    rng = np.random.default_rng(seed)
    t, h, w = sample.frames.shape[:3]
    k = int(rng.integers(0, 3))
    masks = np.zeros((k, t, h, w), bool)
    for j in range(k):
        for f in rng.choice(t, size=int(rng.integers(1, t + 1)), replace=False):
            y, x = rng.integers(0, h - 8), rng.integers(0, w - 8)
            masks[j, f, y : y + int(rng.integers(2, 8)), x : x + int(rng.integers(2, 8))] = True
    return dataclasses.replace(
        sample,
        object_masks=masks,
        description="the scrambled thing",
        type_id=1 - sample.type_id,
        extras={},
    )


class Recording(RandomPolicy):
    """RandomPolicy (answers depend only on what it was shown and its seed) that keeps its
    conversations."""

    def start(self, conversations):
        self.state = super().start(conversations)
        return self.state


def as_bytes(value):
    """A message tree with every array replaced by (dtype, shape, bytes)."""
    if isinstance(value, np.ndarray):
        return ("ndarray", str(value.dtype), value.shape, value.tobytes())
    if isinstance(value, dict):
        return {k: as_bytes(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [as_bytes(v) for v in value]
    if hasattr(value, "__array__"):  # PIL images
        return as_bytes(np.asarray(value))
    return value


def inputs(protocol, samples, seed):
    policy = Recording(protocol, seed=seed)
    play_episodes(protocol, policy, samples, group_size=4, seed=seed)
    return [as_bytes(c) for c in policy.state.conversations]


def eval_protocols():
    out = []
    for name in ("veason", "rcot", "o3", "revseg"):
        c = load_config(f"qwen2_5_vl_3b_grpo:protocol={name}")
        cfg = dict(c.protocol.config)
        # smaller images keep the test fast; sizes do not touch ground truth
        for key in ("image_size", "video_size", "keyframe_size", "spatial_size", "frame_size"):
            if key in cfg:
                cfg[key] = min(cfg[key], 96)
        eval_cfg = dict(c.protocol.get("eval_config") or {})
        out.append(pytest.param(name, cfg, eval_cfg, id=f"3b-{name}"))
    seg = load_config("o3_seg:quick")
    out.append(pytest.param("o3", dict(seg.protocol.config), {}, id="o3-seg"))
    return out


def fake_seg_masks(episode):
    return [None] * len(episode.texts)


@pytest.mark.parametrize("name,cfg,eval_cfg", eval_protocols())
def test_policy_inputs_do_not_depend_on_ground_truth(name, cfg, eval_cfg, synth_samples):
    protocol = make_eval_protocol(name, cfg, eval_cfg)
    if name == "o3":
        protocol.seg_masks = fake_seg_masks
    samples = synth_samples[:6]
    for seed in (0, 1):
        clean = inputs(protocol, samples, seed)
        dirty = inputs(protocol, [scrambled(s, seed + 7 * i) for i, s in enumerate(samples)], seed)
        assert clean == dirty
    if name != "veason":  # one turn
        assert max(len(c) for c in clean) > 3, "the random policy should reach later turns"


def test_rcot_reselection_inputs_do_not_depend_on_ground_truth(target_samples):
    """Scripted B answers drive the re-selection loop (the AKS ground truth is not shown)."""
    protocol = make_eval_protocol("rcot", {"video_size": 64, "keyframe_size": 64})
    script = ["<think>x</think><answer>d</answer>"]
    script += ['<think>x</think><answer>{"keyframe": 3}</answer>', "<answer>B</answer>"] * 5
    script += ["<answer>[]</answer>"]
    for s in target_samples[:3]:
        a, b = ReplayPolicy(script), ReplayPolicy(script)
        ea, _ = play_episodes(protocol, a, [s])
        eb, _ = play_episodes(protocol, b, [scrambled(s, 3)])
        obs = lambda eps: [as_bytes(t.observation) for t in eps[0].turns]  # noqa: E731
        assert obs(ea) == obs(eb) and len(ea[0].turns) == 12


def test_training_samplers_do_read_ground_truth(synth_samples):
    """The check above can fail: the training-only samplers change with the ground truth,
    and evaluation refuses them."""
    samples = [s for s in synth_samples if not s.is_null][:4]
    for name, cfg in (
        ("veason", {"sampling": "keyframe", "image_size": 64}),
        ("rcot", {"task": "ktg", "keyframe_size": 64}),
        ("rcot", {"task": "aks", "keyframe_size": 64}),
    ):
        protocol = make_protocol(name, **cfg)
        assert protocol.ground_truth_inputs()
        clean = inputs(protocol, samples, 0)
        dirty = inputs(protocol, [scrambled(s, i) for i, s in enumerate(samples)], 0)
        assert clean != dirty, name
        with pytest.raises(ValueError, match="ground truth"):
            make_eval_protocol(name, {}, cfg)


def test_eval_defaults_override_training_samplers():
    assert make_eval_protocol("veason", {"sampling": "keyframe", "num_frames": 6}).cfg == (
        make_protocol("veason", sampling="uniform", num_frames=8).cfg
    )
    assert make_eval_protocol("rcot", {"task": "aks"}).cfg.task == "pipeline"
    assert set(EVAL_DEFAULTS) == {"veason", "rcot", "o3", "revseg"}
    for name in EVAL_DEFAULTS:
        assert make_eval_protocol(name).ground_truth_inputs() == []
