"""Per-block remat (jaxseg/models/remat.py): the same loss and gradients as without
it, for the decoder and the vision tower, under every policy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxseg.models.qwen2_5_vl import (
    Qwen2_5_VLForConditionalGeneration,
    get_rope_index,
    vision_layout,
)
from jaxseg.models.qwen2_5_vl.presets import preset_config
from jaxseg.models.remat import check_remat, set_remat
from jaxseg.rl.logprobs import next_token_logprobs

IMG, VID, VS, VE = 90, 91, 92, 93


@pytest.fixture(scope="module")
def setup():
    """Nano model (random weights: N(0, 0.05), norms 1 + N(0, 0.1)) and one image+text row."""
    cfg = preset_config(
        "nano",
        vocab_size=96,
        image_token_id=IMG,
        video_token_id=VID,
        vision_start_token_id=VS,
        vision_end_token_id=VE,
    )
    # Shapes only, then numpy values (eager init would compile one program per shape).
    model = nnx.eval_shape(lambda: Qwen2_5_VLForConditionalGeneration(cfg, rngs=nnx.Rngs(0)))
    rng = np.random.default_rng(0)
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        noise = rng.standard_normal(var.shape).astype(np.float32)
        is_norm = any("norm" in str(p) or p == "ln_q" for p in path)
        var.set_value(jnp.asarray(1.0 + 0.1 * noise if is_norm else 0.05 * noise))
    grid = np.array([[1, 4, 8]])  # 32 patches, 2 attention windows of 56 px -> 8 tokens
    ids = np.array([[5, 6, VS] + [IMG] * 8 + [VE] + list(range(10, 22))], np.int32)
    pixels = rng.standard_normal((32, cfg.vision.patch_dim)).astype(np.float32)
    layout = vision_layout(grid, cfg.vision)
    positions, _ = get_rope_index(ids, grid, config=cfg)
    return model, (jnp.asarray(ids), jnp.asarray(pixels), layout, jnp.asarray(positions))


def _loss_and_grads(model, inputs):
    ids, pixels, layout, positions = inputs

    @nnx.jit
    def step(model):
        def loss(m):
            embeds = m.embed_and_merge(ids, pixels, image_layout=layout)
            logits, _ = m.decode(embeds, positions)
            return -next_token_logprobs(logits, ids).mean()

        return nnx.value_and_grad(loss)(model)

    value, grads = step(model)
    return float(value), {p: np.asarray(v[...]) for p, v in nnx.to_flat_state(grads)}


@pytest.fixture(scope="module")
def plain(setup):
    return _loss_and_grads(*setup)


@pytest.mark.parametrize("policy", ["dots_saveable", "full"])
def test_remat_gradients_equal_plain(setup, plain, policy):
    model, inputs = setup
    ref_loss, ref = plain
    remat = set_remat(nnx.clone(model), policy)
    assert remat.language_model.remat == policy and remat.visual.remat == policy
    loss, grads = _loss_and_grads(remat, inputs)
    assert loss == pytest.approx(ref_loss, abs=1e-6)
    assert set(grads) == set(ref)
    for path, g in ref.items():
        np.testing.assert_allclose(grads[path], g, atol=1e-5, rtol=0, err_msg=str(path))
    vision = [p for p in ref if p[0] == "visual" and "blocks" in p]
    assert vision and all(np.abs(ref[p]).max() > 0 for p in vision)  # the tower is trained


def test_remat_changes_the_program(setup):
    """The switch is real: the gradient's jaxpr holds one remat op per block under `full`,
    none without."""
    model, (ids, pixels, layout, positions) = setup

    def remat_ops(policy: str) -> int:
        graphdef, state = nnx.split(set_remat(nnx.clone(model), policy))

        def loss(state):
            m = nnx.merge(graphdef, state)
            logits, _ = m.decode(m.embed_and_merge(ids, pixels, image_layout=layout), positions)
            return logits.sum()

        jaxpr = str(jax.make_jaxpr(jax.grad(loss))(state))
        return jaxpr.count("remat2[")  # one per rematerialised block

    blocks = model.config.vision.depth + model.config.text.num_hidden_layers
    assert remat_ops("none") == 0
    assert remat_ops("full") == blocks


def test_unknown_policy_names_the_field():
    with pytest.raises(ValueError, match=r"train.remat = 'block'.*dots_saveable"):
        check_remat("block", "train.remat")
