"""VideoSEG-O3's real configs (Qwen3-VL-2B/4B + [SEG] + SAM2-Hiera-L heads): they build
abstractly with the released parameter counts, plan on a v5p-32, and carry the released
recipe's [SEG] settings."""

import numpy as np
import pytest
from flax import nnx

from jaxseg.cli import main
from jaxseg.config import load_config
from jaxseg.models.sam2 import SAM2MaskDecoderModule, preset
from jaxseg.parallel.planner import abstract_model, model_config
from jaxseg.protocols.registry import make_eval_protocol, make_protocol
from jaxseg.seg.projector import SegProjector
from jaxseg.seg.train import decoder_checkpoint

# transformers' meta build of the released configs (tests/models/qwen3_vl), SAM2-Hiera-L's
# prompt encoder + mask decoder, the [SEG] projector Linear(h, h) -> ReLU -> Linear(h, 256)
QWEN = {"2b": 2_127_532_032, "4b": 4_437_815_808}
HIDDEN = {"2b": 2048, "4b": 2560}
SAM2_HEADS = 4_221_329


def _count(module) -> int:
    return sum(int(np.prod(v.shape)) for _, v in nnx.to_flat_state(nnx.state(module, nnx.Param)))


@pytest.mark.parametrize("size", ["2b", "4b"])
def test_abstract_build_parameter_counts(size):
    c = load_config(f"qwen3_vl_{size}_o3_seg")
    assert c.model.family == "qwen3_vl"
    policy = abstract_model(model_config(c.model.hf_config))
    assert _count(policy) == QWEN[size]
    heads = nnx.eval_shape(
        lambda: SAM2MaskDecoderModule(
            preset(c.seg.decoder_preset, **dict(c.seg.decoder_args)), nnx.Rngs(0)
        )
    )
    assert _count(heads) == SAM2_HEADS
    h = HIDDEN[size]
    projector = nnx.eval_shape(lambda: SegProjector(h, 256, rngs=nnx.Rngs(0)))
    assert _count(projector) == h * h + h + h * 256 + 256
    total = QWEN[size] + SAM2_HEADS + _count(projector)
    print(f"qwen3_vl_{size}_o3_seg trainable parameters: {total:,}")


@pytest.mark.parametrize("size", ["2b", "4b"])
def test_plan_line(size, capsys):
    rc = main(["plan", "--config", f"qwen3_vl_{size}_o3_seg", "--topology", "v5p-32"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert f"{QWEN[size]:,}" in out.replace("_", ",") or str(QWEN[size]) in out.replace(",", "")
    assert "-> fits" in out


def test_released_seg_recipe_fields():
    c = load_config("qwen3_vl_4b_o3_seg")
    p = make_protocol("o3", **dict(c.protocol.config))
    assert (p.cfg.answer, p.cfg.keyframes, p.cfg.seg_mask_reward) == ("seg", "released", "decoded")
    assert (p.cfg.temporal_frames, p.cfg.spatial_frames, p.cfg.max_turns) == (10, 5, 3)
    ev = make_eval_protocol("o3", dict(c.protocol.config), dict(c.protocol.eval_config))
    assert (ev.cfg.temporal_frames, ev.cfg.spatial_frames, ev.cfg.keyframe_size) == (20, 8, 634)
    assert ev.ground_truth_inputs() == []
    assert (c.seg.aux_weight, c.seg.sampled_frames, c.seg.grid) == (0.2, True, 32)
    assert decoder_checkpoint(c) == c.segmenter.config.checkpoint  # heads from SAM2
    assert c.seg.encoder.checkpoint == c.segmenter.config.checkpoint  # features: same SAM2
    g = c.grpo
    assert (g.group_size, g.learning_rate, g.kl_coef, g.kl_estimator) == (4, 3e-6, 0.04, "k3")
    assert (g.policy_loss, g.advantage_eps, g.max_new_tokens) == ("on_policy", 1e-4, 512)
