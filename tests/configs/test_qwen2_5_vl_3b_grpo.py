"""The 3B real-run config: every protocol builds the objects the trainer builds from it, carries
the fields the trainer reads, and its planner block mirrors its GRPO block."""

import math

import pytest

from jaxseg.config import load_config
from jaxseg.protocols.registry import make_protocol
from jaxseg.rl.objective import GRPOLossConfig
from jaxseg.sampling.filters import SamplingParams
from jaxseg.train.lora import LoRAConfig

NAME = "qwen2_5_vl_3b_grpo"
PROTOCOLS = ("veason", "rcot", "o3", "revseg")


def _fields(block, prefix=""):
    out = set()
    for key, value in block.items():
        if hasattr(value, "items") and key != "config":
            out |= _fields(value, f"{prefix}{key}.")
        else:
            out.add(prefix + key)
    return out


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_protocol_config_builds_what_the_trainer_builds(protocol):
    c = load_config(f"{NAME}:protocol={protocol}")
    assert c.protocol.name == protocol
    make_protocol(c.protocol.name, **dict(c.protocol.config))
    g = c.grpo
    GRPOLossConfig(
        policy_loss=g.policy_loss,
        eps_low=g.eps_low,
        eps_high=g.eps_high,
        kl_estimator=g.kl_estimator,
        kl_coef=g.kl_coef,
        aggregation=g.aggregation,
    )
    SamplingParams(temperature=g.temperature, top_k=g.top_k, top_p=g.top_p)
    assert LoRAConfig.from_stage(g, "grpo") is None  # the seeds' GRPO is full fine-tuning
    # the trainer reads the demo's fields; the real-run config has every one of them
    demo = load_config("demo")
    for block in ("sft", "grpo", "eval"):
        missing = _fields(demo[block]) - _fields(c[block])
        assert not missing, (block, missing)
    for key in ("init", "processor", "dtype"):
        assert key in c.model
    for key in ("root", "format", "train_split", "eval_split"):
        assert key in c.data
    # the planner reads the trainer's blocks; `plan` holds only its own assumptions
    assert "rl" not in c and "train" not in c
    assert set(c.plan) == {
        "frames",
        "frame_size",
        "text_prompt_tokens",
        "turns",
        "sampler_weights",
        "mfu",
    }


@pytest.mark.parametrize("protocol", ["veason", "rcot", "o3"])
def test_cold_start_is_one_lora_epoch(protocol):
    s = load_config(f"{NAME}:protocol={protocol}").sft
    assert s.steps == math.ceil(s.num_examples / s.batch_size)
    lora = LoRAConfig.from_stage(s, "sft")
    assert lora is not None and lora.targets[0] == "q_proj"


def test_seed_values_and_knobs():
    veason = load_config(NAME)
    assert veason.protocol.name == "veason"
    assert (veason.grpo.group_size, veason.grpo.learning_rate, veason.grpo.kl_coef) == (
        8,
        1e-6,
        5e-3,
    )
    assert veason.sft.lora_rank == 8 and veason.protocol.config.image_size == 560
    o3 = load_config(f"{NAME}:protocol=o3")
    assert (o3.grpo.group_size, o3.grpo.policy_loss, o3.grpo.kl_coef) == (4, "on_policy", 0.04)
    assert (o3.grpo.max_new_tokens, o3.plan.turns) == (512, 3)  # three turns of 512
    assert (o3.sft.lora_rank, o3.sft.lora_alpha) == (128, 256.0)
    rcot = load_config(f"{NAME}:protocol=rcot")
    assert rcot.sft.warmup_steps == round(0.1 * rcot.sft.steps)
    revseg = load_config(f"{NAME}:protocol=revseg")
    assert revseg.sft.steps == 0 and not revseg.grpo.require_sft
    knobs = load_config(f"{NAME}:protocol=o3,group=8,new_tokens=256,frames=3")
    assert knobs.grpo.group_size == 8
    assert (knobs.grpo.max_new_tokens, knobs.plan.frames) == (256, 3)
    with pytest.raises(ValueError, match="protocol='sam'"):
        load_config(f"{NAME}:protocol=sam")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_evaluation_config_is_separate_and_ground_truth_free(protocol):
    """Every protocol has an explicit eval config; the protocol the
    trainer evaluates with takes no input from annotations."""
    from jaxseg.protocols.registry import make_eval_protocol

    c = load_config(f"{NAME}:protocol={protocol}")
    ev = make_eval_protocol(protocol, dict(c.protocol.config), dict(c.protocol.eval_config))
    assert ev.ground_truth_inputs() == []
    if protocol == "veason":  # §3: train 6 keyframe-centred frames, eval 8 uniform
        assert (c.protocol.config.num_frames, c.protocol.config.sampling) == (6, "keyframe")
        assert (ev.cfg.num_frames, ev.cfg.sampling, ev.cfg.image_size) == (8, "uniform", 560)
    if protocol == "o3":  # §1(c) RL 10 / 5 frames vs §1(d) eval 20 / 8
        assert (ev.cfg.temporal_frames, ev.cfg.spatial_frames) == (20, 8)
        assert c.grpo.advantage_eps == 1e-4


def test_rcot_trains_two_grpo_stages():
    from types import SimpleNamespace

    from jaxseg.protocols.registry import make_protocol
    from jaxseg.train.stages import grpo_stages

    c = load_config(f"{NAME}:protocol=rcot")
    exp = SimpleNamespace(config=c, protocol=make_protocol("rcot", **dict(c.protocol.config)))
    runs = grpo_stages(exp)
    assert [(r.name, r.dir, r.start_from, r.config.steps) for r in runs] == [
        ("aks", "grpo_aks", "sft", 500),
        ("ktg", "grpo", "grpo_aks", 1000),
    ]
    assert [r.protocol.cfg.task for r in runs] == ["aks", "ktg"]
    assert all(r.single_multi == (3.0, 1.0) for r in runs)
    assert sum(r.config.steps for r in runs) == c.grpo.steps
    joint = load_config(f"{NAME}:protocol=rcot", ["grpo.stages="])
    (one,) = grpo_stages(SimpleNamespace(config=joint, protocol=exp.protocol))
    assert one.dir == "grpo" and one.protocol.cfg.task == "pipeline"


def test_rcot_cold_start_is_the_two_stage_tasks():
    from jaxseg.train.stages import sft_task_protocols

    c = load_config(f"{NAME}:protocol=rcot")
    split = [(p.cfg.task, n) for p, n in sft_task_protocols(c, c.sft.num_examples)]
    assert split == [("aks", 8000), ("ktg", 20000)]  # §4(c) RCoT-Seg-SFT-28k
    assert load_config(NAME).sft.tasks == ""
