"""The base recipe end to end in miniature: `synthetic_base:quick` builds its policy with
transformers' initial draw and a sine-cosine position table, trains its curriculum's first
steps, and evaluates every task plus the current phase's scenes."""

from __future__ import annotations

import json

import numpy as np
import pytest


@pytest.fixture(scope="module")
def quick_base(tmp_path_factory):
    from jaxseg.config import load_config
    from jaxseg.train.trainer import Experiment

    workdir = tmp_path_factory.mktemp("base")
    exp = Experiment(load_config("synthetic_base:quick"), workdir, progress=False)
    return exp, workdir


def test_policy_starts_from_the_recipes_init(quick_base):
    from jaxseg.models.qwen3_vl.vision import sincos_position_table

    exp, _ = quick_base
    assert exp.config.model.initializer == "transformers"
    vision = exp.model.config.vision
    side = int(round(vision.num_position_embeddings**0.5))
    table = np.asarray(exp.model.visual.pos_embed[...])
    assert np.allclose(table, sincos_position_table(side, vision.hidden_size))


def test_pretrain_runs_the_curriculum_and_reports_the_phase_scenes(quick_base):
    exp, workdir = quick_base
    exp.pretrain()
    rows = [json.loads(line) for line in (workdir / "pretrain" / "metrics.jsonl").open()]
    losses = [r["loss"] for r in rows if r["kind"] == "train"]
    assert len(losses) == exp.config.pretrain.steps and np.isfinite(losses).all()
    record = exp.periodic_eval("pretrain", 0)  # step 0: single-object scenes
    for task in exp.config.pretrain.base.eval_tasks:
        assert any(k.startswith(f"{task}/") for k in record), task
    assert "cell@scenes/accuracy" in record
    late = exp.base_eval(count=4, step=10**6)  # full scenes: nothing extra to report
    assert "cell@scenes" not in late
