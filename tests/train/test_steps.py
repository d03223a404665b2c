"""Train steps: batch building, exact micro-batch accumulation, SFT/GRPO updates."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from policy_examples import example

from jaxseg.models.qwen2_5_vl import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
from jaxseg.models.qwen2_5_vl.config import TextConfig, VisionConfig
from jaxseg.rl.objective import GRPOLossConfig
from jaxseg.train.batch import make_policy_batch
from jaxseg.train.steps import (
    OptimizerConfig,
    SFTLoss,
    accumulate_grads,
    make_optimizer,
    sequence_logprobs,
    train_step,
)

jax.config.update("jax_default_matmul_precision", "highest")
IMG, VID, VS, VE = 60, 61, 62, 63


def tiny_config():
    return Qwen2_5_VLConfig(
        vision=VisionConfig(
            depth=2,
            hidden_size=16,
            intermediate_size=24,
            num_heads=2,
            out_hidden_size=32,
            patch_size=14,
            temporal_patch_size=2,
            spatial_merge_size=2,
            window_size=56,
            fullatt_block_indexes=(1,),
            tokens_per_second=2,
        ),
        text=TextConfig(
            vocab_size=64,
            hidden_size=32,
            intermediate_size=48,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            rms_norm_eps=1e-6,
            rope_theta=1e4,
            mrope_section=(1, 1, 2),
            max_position_embeddings=1024,
        ),
        image_token_id=IMG,
        video_token_id=VID,
        vision_start_token_id=VS,
        vision_end_token_id=VE,
        tie_word_embeddings=False,
    )


@pytest.fixture(scope="module")
def setup():
    cfg = tiny_config()
    rng = np.random.default_rng(0)
    examples = [
        example(rng, n, img, cfg) for n, img in [(10, True), (17, False), (12, True), (9, False)]
    ]
    for i, e in enumerate(examples):
        n = e["input_ids"].size
        e["advantage"] = [1.0, -0.5, 0.25, -0.75][i]
        e["old_logp"] = rng.normal(size=n).astype(np.float32) * 0.1 - 4.0
        e["ref_logp"] = rng.normal(size=n).astype(np.float32) * 0.1 - 4.0
    return cfg, examples


def _grads_close(a, b, tol):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=tol, rtol=tol)


def test_batch_positions_and_masks(setup):
    cfg, examples = setup
    batch = make_policy_batch(examples, config=cfg, length_buckets=(32,))
    assert batch.input_ids.shape == (4, 32) and batch.position_ids.shape == (3, 4, 32)
    # loss mask is target-aligned and never on padding
    n0 = examples[0]["input_ids"].size
    np.testing.assert_array_equal(batch.loss_mask[0, : n0 - 1], examples[0]["policy_mask"][1:])
    assert batch.loss_mask[0, n0 - 1 :].sum() == 0
    # image positions: the 2x2 merged grid shares its temporal position
    img_pos = batch.position_ids[:, 0][:, batch.input_ids[0] == IMG]
    assert (img_pos[0] == img_pos[0, 0]).all() and set(img_pos[1] - img_pos[1].min()) == {0, 1}


def test_batch_errors_name_the_field(setup):
    cfg, examples = setup
    bad = dict(examples[0], policy_mask=np.ones(3))
    with pytest.raises(ValueError, match="policy_mask"):
        make_policy_batch([bad], config=cfg)
    bad = dict(examples[0], image_grid_thw=np.array([[1, 4, 8]]))
    with pytest.raises(ValueError, match="image_grid_thw"):
        make_policy_batch([bad], config=cfg)
    with pytest.raises(KeyError, match="policy_mask"):
        make_policy_batch([{"input_ids": np.arange(4)}], config=cfg)


@pytest.mark.parametrize(
    "loss",
    [
        SFTLoss(),
        GRPOLossConfig(policy_loss="ppo_clip", kl_coef=0.05, aggregation="seq-mean-token-mean"),
    ],
    ids=["sft", "ppo-seqmean"],
)
def test_micro_batches_equal_full_batch(setup, loss):
    cfg, examples = setup
    model = Qwen2_5_VLForConditionalGeneration(cfg, rngs=nnx.Rngs(1))
    full = make_policy_batch(examples, config=cfg, length_buckets=(32,))
    parts = [
        make_policy_batch(examples[:1], config=cfg, length_buckets=(16, 32)),
        make_policy_batch(examples[1:], config=cfg, length_buckets=(32,)),
    ]
    v_full, g_full, _ = accumulate_grads(model, [full], loss)
    v_mb, g_mb, _ = accumulate_grads(model, parts, loss)
    assert abs(v_full - v_mb) < 1e-5
    _grads_close(g_full, g_mb, 1e-5)


def test_sft_steps_reduce_loss(setup):
    cfg, examples = setup
    model = Qwen2_5_VLForConditionalGeneration(cfg, rngs=nnx.Rngs(2))
    opt = nnx.Optimizer(
        model,
        make_optimizer(OptimizerConfig(learning_rate=3e-3, schedule="constant")),
        wrt=nnx.Param,
    )
    batch = make_policy_batch(examples, config=cfg, length_buckets=(32,))
    losses = [train_step(model, opt, [batch], SFTLoss())["loss"] for _ in range(8)]
    assert losses[-1] < 0.8 * losses[0], losses


def test_grpo_step_moves_logprobs_with_advantage(setup):
    cfg, examples = setup
    model = Qwen2_5_VLForConditionalGeneration(cfg, rngs=nnx.Rngs(3))
    batch = make_policy_batch(examples, config=cfg, length_buckets=(32,))
    before = np.asarray(sequence_logprobs(model, batch))
    model_copy = nnx.clone(model)
    opt = nnx.Optimizer(
        model,
        make_optimizer(OptimizerConfig(learning_rate=1e-3, schedule="constant")),
        wrt=nnx.Param,
    )
    loss_cfg = GRPOLossConfig(policy_loss="ppo_clip", kl_coef=0.0)
    fixed = batch.replace(old_logp=before)  # old policy = the model before the update
    loss_before = accumulate_grads(model_copy, [fixed], loss_cfg)[0]
    metrics = train_step(model, opt, [fixed], loss_cfg)
    after = np.asarray(sequence_logprobs(model, batch))
    # one GRPO step lowers the loss on the same fixed batch
    loss_after = accumulate_grads(model, [fixed], loss_cfg)[0]
    assert loss_after < loss_before, (loss_before, loss_after)
    m = batch.loss_mask
    delta = ((after - before) * m).sum(1) / m.sum(1)
    # rows with positive advantage gain log-prob, negative ones lose it
    assert np.all(np.sign(delta) == np.sign(batch.advantages)), (delta, batch.advantages)
    assert np.isfinite(metrics["grad_norm"]) and metrics["tokens"] == m.sum()


def test_nonfinite_step_changes_nothing(setup):
    """Fault injection: a NaN in the weights (as a corrupted checkpoint would restore) makes
    the loss NaN; the step is skipped, model and optimizer state stay exactly as they were."""
    cfg, examples = setup
    model = Qwen2_5_VLForConditionalGeneration(cfg, rngs=nnx.Rngs(4))
    opt = nnx.Optimizer(
        model,
        make_optimizer(OptimizerConfig(learning_rate=1e-3, schedule="constant")),
        wrt=nnx.Param,
    )
    batch = make_policy_batch(examples, config=cfg, length_buckets=(32,))
    train_step(model, opt, [batch], SFTLoss())  # a real update first: opt state non-trivial
    emb = model.language_model.embed_tokens.embedding
    emb.value = emb.value.at[:, 0].set(jnp.nan)
    before = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state((model, opt))))
    metrics = train_step(model, opt, [batch], SFTLoss())
    assert metrics["skipped"] == 1.0 and not np.isfinite(metrics["loss"])
    after = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state((model, opt))))
    jax.tree.map(np.testing.assert_array_equal, before, after)
