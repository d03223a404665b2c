"""The shipped grounded base (jaxseg/assets/qwen3_vl_tiny, built by `make base`), checked for
real: loaded through the public loader it re-answers its card's fixed held-out set (a
scrambled or mis-mapped weight must fail that), transformers loads the same files, and a few
SFT steps from it on a task it was never trained on lower the held-out loss (fails if the
gradients are cut)."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from flax import nnx

from jaxseg.models.family import load_pretrained, shipped_base

jax.config.update("jax_default_matmul_precision", "highest")


@pytest.fixture(scope="module")
def base():
    path = shipped_base()
    return path, json.loads((path / "base_scores.json").read_text())


def _experiment(path, tmp_path, model=None):
    from jaxseg.config import load_config
    from jaxseg.train.trainer import Experiment

    config = load_config("synthetic_base", [f"model.init={path}", f"model.processor={path}"])
    exp = Experiment(config, tmp_path, progress=False)
    if model is not None:
        exp.model = model
    return exp


def _answers_match(exp, check) -> tuple[float, float]:
    """(fraction of the card's answers reproduced exactly, |IoU - card IoU|)."""
    from jaxseg.commands.base import check_set

    got = check_set(exp, check["count"])
    same = np.mean([a == b for a, b in zip(got["texts"], check["texts"], strict=True)])
    return float(same), abs(got["box_iou"] - check["box_iou"])


def test_shipped_base_reproduces_its_card_and_a_scrambled_copy_does_not(base, tmp_path):
    path, scores = base
    check = scores["check_set"]
    exp = _experiment(path, tmp_path / "run")
    assert type(exp.model).__name__ == "Qwen3VLForConditionalGeneration"
    same, gap = _answers_match(exp, check)
    assert same >= 0.9 and gap <= 0.05, (same, gap)
    # mis-mapped weights: two decoder layers' MLPs swapped (every shape still matches)
    scrambled = load_pretrained(path)
    layers = scrambled.language_model.layers
    a, b = layers[0].mlp.up_proj.kernel[...], layers[1].mlp.up_proj.kernel[...]
    layers[0].mlp.up_proj.kernel.set_value(b)
    layers[1].mlp.up_proj.kernel.set_value(a)
    same_bad, _ = _answers_match(_experiment(path, tmp_path / "bad", scrambled), check)
    assert same_bad < 0.9, same_bad


def test_card_states_the_numbers_and_transformers_loads_the_files(base):
    import transformers

    path, scores = base
    card = (path / "README.md").read_text()
    box = scores["scores"]["box"]
    assert f"{box['iou']:.3f}" in card and f"{box['prior_mean_box_iou']:.3f}" in card
    assert scores["command"] in card and str(scores["steps"]) in card
    total = sum(f.stat().st_size for f in path.iterdir())
    assert total <= 64 * 2**20
    hf = transformers.Qwen3VLForConditionalGeneration.from_pretrained(path)
    ours = load_pretrained(path)
    n_ours = sum(v.size for _, v in nnx.to_flat_state(nnx.state(ours, nnx.Param)))
    assert n_ours == sum(p.numel() for p in hf.parameters()) == scores["params"]


def test_a_few_sft_steps_from_the_base_lower_held_out_loss_on_a_new_task(base, tmp_path):
    """Naming an object's shape is not a base task; 6 SFT steps on 48 items must lower the loss
    of 24 held-out items (a base whose gradients were cut, or a loader that froze it, fails)."""
    from jaxseg.data.synth.generate import generate_video
    from jaxseg.data.synth.world import SynthConfig
    from jaxseg.protocols.annotations import resize_image
    from jaxseg.protocols.policy import image_part, message, text_part, without_meta
    from jaxseg.train import base_tasks
    from jaxseg.train.steps import OptimizerConfig, SFTLoss, make_optimizer, train_step

    path, _ = base
    exp = _experiment(path, tmp_path / "run")
    rng = np.random.default_rng(0)
    items = []
    v = 0
    while len(items) < 72:
        video = generate_video(123, "shape_task", v, SynthConfig())
        t = int(rng.integers(video.frames.shape[0]))
        objs = base_tasks._frame_objects(video, t)
        colours = [o["colour"] for o in objs]
        for o in objs:
            if colours.count(o["colour"]) == 1:
                q = f"What shape is the {o['colour']} object? Answer with one word."
                msgs = [
                    message("user", [image_part(resize_image(video.frames[t], 112)), text_part(q)]),
                    message("assistant", [text_part(o["shape"])]),
                ]
                items.append(exp.encoder.encode(without_meta(msgs)).as_example())
                break
        v += 1
    train, held = items[:48], items[48:]

    def held_loss(model):
        from jaxseg.train.steps import loss_terms

        batch = exp.batches(held, len(held))[0]
        objective, _ = loss_terms(model, batch, SFTLoss())
        return float(objective.value())

    before = held_loss(exp.model)
    opt = nnx.Optimizer(
        exp.model,
        make_optimizer(OptimizerConfig(learning_rate=1e-3, schedule="constant")),
        wrt=nnx.Param,
    )
    for k in range(6):
        train_step(exp.model, opt, exp.batches(train[8 * k : 8 * k + 8], 8), SFTLoss())
    after = held_loss(exp.model)
    assert after < before - 0.05, (before, after)
