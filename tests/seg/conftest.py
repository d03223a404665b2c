"""A stand-in mask decoder with SAM2's decoder call signature (the math tests need a small
differentiable decoder, not SAM2's numerics), and a nano Qwen policy on a tiny vocabulary."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxseg.models.qwen2_5_vl import Qwen2_5_VLForConditionalGeneration
from jaxseg.models.qwen2_5_vl.presets import preset_config
from jaxseg.seg.policy import SegBatch, SegPolicy
from jaxseg.train.batch import make_policy_batch

VOCAB, SEG_ID = 64, 7
PROMPT_DIM, EMBED_HW = 8, 4


class StandInDecoder(nnx.Module):
    """logits[n] = <W token_n, image_embed[n]> + b, upsampled 4x: (image_embed [N, C, h, w],
    high_res, extra_tokens [N, K, C], multimask) -> ([N, 1, 4h, 4w], [N, 1], [N, 1])."""

    def __init__(self, dim: int, rngs: nnx.Rngs):
        self.proj = nnx.Linear(dim, dim, rngs=rngs)
        self.bias = nnx.Param(jnp.full((), 0.1))

    def __call__(self, image_embed, high_res_feats, extra_tokens, multimask=False):
        q = self.proj(extra_tokens[:, -1])
        m = jnp.einsum("nc,nchw->nhw", q, image_embed) + self.bias[...]
        up = jnp.repeat(jnp.repeat(m, 4, axis=-2), 4, axis=-1)[:, None]
        n = up.shape[0]
        return up, jnp.zeros((n, 1)), jnp.zeros((n, 1))


@pytest.fixture(scope="session")
def qwen_config():
    """nano with one text layer and one vision block: the tests trace the text path only."""
    cfg = preset_config(
        "nano",
        vocab_size=VOCAB,
        image_token_id=60,
        video_token_id=61,
        vision_start_token_id=62,
        vision_end_token_id=63,
    )
    vision = dataclasses.replace(cfg.vision, depth=1, fullatt_block_indexes=(0,))
    return dataclasses.replace(
        cfg, vision=vision, text=dataclasses.replace(cfg.text, num_hidden_layers=1)
    )


def make_policy(config, seed: int = 0) -> SegPolicy:
    rngs = nnx.Rngs(seed)
    qwen = Qwen2_5_VLForConditionalGeneration(config, rngs=rngs)
    return SegPolicy(qwen, StandInDecoder(PROMPT_DIM, rngs), prompt_dim=PROMPT_DIM, rngs=rngs)


def make_batch(config, *, advantages=(1.0,), seed: int = 0, counts=None) -> SegBatch:
    """Text-only rows, each with two [SEG] tokens the policy wrote (and one in the prompt,
    which must not count)."""
    rng = np.random.default_rng(seed)
    examples, index = [], []
    for a in advantages:
        ids = rng.integers(8, 50, size=20)
        ids[3] = SEG_ID  # prompt [SEG] (policy_mask 0)
        ids[12] = ids[17] = SEG_ID
        mask = np.zeros(20, np.float32)
        mask[10:] = 1.0
        examples.append({"input_ids": ids, "policy_mask": mask, "advantage": a})
        index.append([12, 17])
    pb = make_policy_batch(examples, config=config, length_buckets=(32,))
    b, k = len(advantages), 2
    r = rng.standard_normal((b, k, 4 * EMBED_HW, 4 * EMBED_HW)).astype(np.float32)
    gt = rng.random((b, k, 24, 24)) > 0.5
    return SegBatch(
        policy=pb,
        seg_index=jnp.asarray(index, jnp.int32),
        mask_count=jnp.asarray(counts if counts is not None else [k] * b, jnp.int32),
        image_embed=jnp.asarray(
            rng.standard_normal((b, k, PROMPT_DIM, EMBED_HW, EMBED_HW)), jnp.float32
        ),
        high_res_feats=(),
        rollout_logits=jnp.asarray(r),
        gt_masks=jnp.asarray(gt, jnp.float32),
        gt_valid=jnp.ones((b, k), bool),
    )


@pytest.fixture(scope="session")
def target_samples():
    """Synthetic samples that have a target (small 128 px videos, generated in memory)."""
    from jaxseg.data.synth import SynthConfig, generate_video
    from jaxseg.protocols.sample import from_synth

    cfg = SynthConfig.preset("medium", frames=(16, 20), queries_per_video=4)
    video = generate_video(0, "test", 0, cfg)
    samples = [from_synth(video, q, key=f"v0/q{q}") for q in range(len(video.queries))]
    return [s for s in samples if not s.is_null]
