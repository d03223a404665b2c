"""Qwen3-VL under the trainer's knobs: per-block remat gives the same loss and gradients as
none (vision tower with DeepStack, decoder), and LoRA adapts every decoder projection."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxseg.models.family import get_family
from jaxseg.models.remat import set_remat
from jaxseg.rl.logprobs import next_token_logprobs
from jaxseg.train.lora import LoRAConfig, apply_lora, merge_lora

IMG, VID, VS, VE = 90, 91, 92, 93


@pytest.fixture(scope="module")
def setup():
    family = get_family("qwen3_vl")
    cfg = family.preset(
        "nano",
        vocab_size=96,
        image_token_id=IMG,
        video_token_id=VID,
        vision_start_token_id=VS,
        vision_end_token_id=VE,
    )
    model = nnx.eval_shape(lambda: family.build(cfg, rngs=nnx.Rngs(0)))
    rng = np.random.default_rng(0)
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        noise = rng.standard_normal(var.shape).astype(np.float32)
        is_norm = any("norm" in str(p) for p in path)
        var.set_value(jnp.asarray(1.0 + 0.1 * noise if is_norm else 0.05 * noise))
    grid = np.array([[1, 4, 8]])
    ids = np.array([[5, 6, VS] + [IMG] * 8 + [VE] + list(range(10, 22))], np.int32)
    pixels = rng.standard_normal((32, cfg.vision.patch_dim)).astype(np.float32)
    layout = family.vision_layout(grid, cfg.vision)
    positions, _ = family.get_rope_index(ids, grid, config=cfg)
    return model, (jnp.asarray(ids), jnp.asarray(pixels), layout, jnp.asarray(positions))


def _loss_and_grads(model, inputs):
    ids, pixels, layout, positions = inputs

    @nnx.jit
    def step(model):
        def loss(m):
            logits, _ = m.forward(ids, None, positions, pixel_values=pixels, image_layout=layout)
            return -next_token_logprobs(logits, ids).mean()

        return nnx.value_and_grad(loss)(model)

    value, grads = step(model)
    return float(value), {p: np.asarray(v) for p, v in nnx.to_flat_state(grads)}


@pytest.mark.parametrize("policy", ["dots_saveable", "full"])
def test_remat_keeps_loss_and_gradients(setup, policy):
    model, inputs = setup
    ref_loss, ref_grads = _loss_and_grads(set_remat(nnx.clone(model), "none"), inputs)
    loss, grads = _loss_and_grads(set_remat(nnx.clone(model), policy), inputs)
    assert loss == pytest.approx(ref_loss, abs=1e-6)
    deep = [p for p in ref_grads if "deepstack_merger_list" in str(p)]
    assert deep and all(np.abs(ref_grads[p]).max() > 0 for p in deep)
    for path, g in ref_grads.items():
        np.testing.assert_allclose(grads[path], g, atol=1e-6, rtol=1e-5, err_msg=str(path))


def test_lora_adapts_every_decoder_projection_and_merges_back(setup):
    model, inputs = setup
    adapted = nnx.clone(model)
    names = apply_lora(adapted, LoRAConfig(rank=4, alpha=8.0), rngs=nnx.Rngs(1))
    layers = model.config.text.num_hidden_layers
    assert len(names) == 7 * layers  # q, k, v, o, gate, up, down in every layer
    assert not any("visual" in n for n in names)
    ids, pixels, layout, positions = inputs
    before = adapted.forward(ids, None, positions, pixel_values=pixels, image_layout=layout)[0]
    merge_lora(adapted)
    after = adapted.forward(ids, None, positions, pixel_values=pixels, image_layout=layout)[0]
    np.testing.assert_allclose(np.asarray(after), np.asarray(before), atol=1e-5)
    assert jax.tree.structure(nnx.state(adapted, nnx.Param)) == jax.tree.structure(
        nnx.state(model, nnx.Param)
    )
