"""The learner (jaxseg.train.learner) with a toy piece: resume from the checkpointed data
position, older checkpoints without it, and LoRA on a part of a composite module."""

from __future__ import annotations

import dataclasses
import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from ml_collections import ConfigDict

from jaxseg.data.pipeline import ShuffledSteps, step_feed
from jaxseg.models.layers import Linear
from jaxseg.train.learner import Learner
from jaxseg.train.metrics import MetricsLogger
from jaxseg.train.steps import train_step

RNG = np.random.default_rng(0)
RECORDS = [(RNG.normal(size=4).astype(np.float32), np.float32(RNG.normal())) for _ in range(12)]


def _linear(d_in, d_out, rngs):
    return Linear(
        d_in, d_out, use_bias=True, axes=(None, None), dtype=jnp.float32,
        param_dtype=jnp.float32, rngs=rngs,
    )  # fmt: skip


class Inner(nnx.Module):
    def __init__(self, rngs):
        self.q_proj = _linear(4, 8, rngs)


class LanguageModel(nnx.Module):
    def __init__(self, rngs):
        self.language_model = Inner(rngs)


class Toy(nnx.Module):
    """A language model (LoRA's target) and a head outside it, like SegPolicy."""

    def __init__(self, seed=0):
        rngs = nnx.Rngs(seed)
        self.qwen = LanguageModel(rngs)
        self.head = _linear(8, 1, rngs)

    def __call__(self, x):
        return self.head(jnp.tanh(self.qwen.language_model.q_proj(x)))[:, 0]


class ToyVLM(Toy):
    """Toy with a vision tower (`visual`) in front of its language model."""

    def __init__(self, seed=0):
        super().__init__(seed)
        self.visual = _linear(4, 4, nnx.Rngs(seed + 1))

    def __call__(self, x):
        return super().__call__(jnp.tanh(self.visual(x)))


@dataclasses.dataclass(frozen=True)
class SquaredError:
    """A StepLoss: sum of squared errors over the step's rows."""

    def weights(self, batch):
        return np.asarray([len(batch["y"])], np.float64)

    def objective(self, model, batch, denoms):
        sse = jnp.sum(jnp.square(model(batch["x"]) - batch["y"]))
        return sse / denoms[0], {"sse": sse}

    def metrics(self, sums, denoms):
        return {"mse": sums["sse"] / float(denoms[0])}

    def place(self, batch, mesh):
        return batch


class Stopped(RuntimeError):
    pass


@dataclasses.dataclass
class ToyPiece:
    module: Toy
    config: ConfigDict
    stop_at: int = -1
    name: str = "toy"
    lora_block: str = "toy"
    schedule: str = "constant"

    def __post_init__(self):
        self.read = []

    @property
    def lora_model(self):
        return self.module.qwen

    def feed(self, steps):
        load = lambda _, idx: [RECORDS[i] for i in idx]  # noqa: E731
        return step_feed(ShuffledSteps(len(RECORDS), 4, seed=0), load, steps=steps)

    def step(self, data, optimizer):
        self.read.append(data.step)
        if data.step == self.stop_at:
            raise Stopped
        batch = {
            "x": np.stack([x for x, _ in data.items]),
            "y": np.stack([y for _, y in data.items]),
        }
        return train_step(self.module, optimizer, [batch], SquaredError())

    def evaluate(self, step):
        return {"step_seen": float(step)}

    def postfix(self, metrics):
        return {"mse": f"{metrics['mse']:.3f}"}


def _config(**kw):
    c = dict(steps=6, learning_rate=0.05, checkpoint_every=1, keep=10, eval_every=3, lora_rank=0)
    return ConfigDict({**c, **kw})


def _run(workdir, config, stop_at=-1, model=Toy):
    learner = Learner(workdir, mesh=None, seed=0, logger=MetricsLogger, progress=False)
    piece = ToyPiece(model(), config, stop_at)
    try:
        learner.run(piece)
    except Stopped:
        pass
    return piece


def _params(module):
    flat = jax.tree_util.tree_leaves_with_path(nnx.to_pure_dict(nnx.state(module, nnx.Param)))
    return {jax.tree_util.keystr(k): np.asarray(v) for k, v in flat}


def test_a_stopped_stage_resumes_reading_each_step_once(tmp_path):
    whole = _run(tmp_path / "whole", _config())
    assert whole.read == [0, 1, 2, 3, 4, 5]
    assert _run(tmp_path / "cut", _config(), stop_at=3).read == [0, 1, 2, 3]  # in epoch 1
    resumed = _run(tmp_path / "cut", _config())
    assert resumed.read == [3, 4, 5]
    want, got = _params(whole.module), _params(resumed.module)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    meta = json.loads((tmp_path / "cut" / "toy" / "ckpt" / "5" / "meta" / "metadata").read_text())
    assert meta["next_step"] == 6 and meta["data"] == {"next_index": 6}
    rows = [
        json.loads(x)
        for x in (tmp_path / "cut" / "toy" / "metrics.jsonl").read_text().split("\n")
        if x
    ]
    assert [r["step"] for r in rows if r["kind"] == "train"] == [0, 1, 2, 3, 4, 5]
    assert [r["step"] for r in rows if r["kind"] == "eval"] == [2, 5]
    again = _run(tmp_path / "cut", _config())  # a finished stage is skipped
    assert again.read == []


def test_checkpoints_without_a_data_position_resume_at_their_step(tmp_path):
    _run(tmp_path, _config(), stop_at=2)
    path = tmp_path / "toy" / "ckpt" / "1" / "meta" / "metadata"
    meta = json.loads(path.read_text())
    path.write_text(json.dumps({k: v for k, v in meta.items() if k != "data"}))
    assert _run(tmp_path, _config(steps=4)).read == [2, 3]
    path = tmp_path / "toy" / "ckpt" / "3" / "meta" / "metadata"
    meta = json.loads(path.read_text())
    path.write_text(json.dumps({**meta, "data": {"next_index": 1}}))
    with pytest.raises(ValueError, match="data iterator is at step 1 but its model at step 4"):
        _run(tmp_path, _config(steps=6))


def test_lora_on_a_part_trains_its_adapters_and_the_rest(tmp_path):
    """LoRA on the language model of a composite module: the adapters and the head train, the
    language model's base kernel stays; the stage ends merged and resumes exactly."""
    config = _config(steps=3, lora_rank=2, lora_targets=("q_proj",))
    before = _params(Toy())
    whole = _run(tmp_path / "whole", config)
    after = _params(whole.module)
    assert set(after) == set(before)  # merged back: a plain module
    changed = {k for k in before if not np.array_equal(before[k], after[k])}
    assert any("head" in k for k in changed) and any("q_proj']['kernel" in k for k in changed)
    assert not any("q_proj']['bias" in k for k in changed)  # frozen under LoRA
    lora = tmp_path / "whole" / "toy" / "ckpt" / "2" / "lora"
    assert lora.is_dir()
    _run(tmp_path / "cut", config, stop_at=2)
    resumed = _run(tmp_path / "cut", config)
    assert resumed.read == [2]
    for k, v in _params(resumed.module).items():
        np.testing.assert_allclose(v, after[k], atol=1e-7, err_msg=k)
    shutil.rmtree(tmp_path / "cut" / "toy" / "ckpt" / "2")
    with pytest.raises(ValueError, match="lora_rank"):  # a LoRA stage resumed as full
        _run(tmp_path / "cut", _config(steps=3, lora_rank=0))


@pytest.mark.parametrize("lora_rank", [0, 2])
def test_freeze_vision_keeps_the_tower_and_trains_the_rest(tmp_path, lora_rank):
    """`freeze_vision`: the tower's parameters stay as they were (full fine-tuning or LoRA on
    the language model), the rest trains, and a stopped stage resumes to the same weights;
    a module without a tower is refused."""
    config = _config(steps=3, lora_rank=lora_rank, lora_targets=("q_proj",), freeze_vision=True)
    before = _params(ToyVLM())
    whole = _run(tmp_path / "whole", config, model=ToyVLM)
    after = _params(whole.module)
    changed = {k for k in before if not np.array_equal(before[k], after[k])}
    assert not any("visual" in k for k in changed)
    assert any("head" in k for k in changed) and any("q_proj']['kernel" in k for k in changed)
    _run(tmp_path / "cut", config, stop_at=2, model=ToyVLM)
    resumed = _run(tmp_path / "cut", config, model=ToyVLM)
    assert resumed.read == [2]
    for k, v in _params(resumed.module).items():
        np.testing.assert_allclose(v, after[k], atol=1e-7, err_msg=k)
    with pytest.raises(ValueError, match="no vision tower"):
        _run(tmp_path / "toy", config)
