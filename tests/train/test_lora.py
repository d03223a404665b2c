"""LoRA: exact start, adapters-only training, merge == adapted forward, checkpoint resume,
HF export of the merged model, and the trainer's LoRA stages end to end."""

import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st
from policy_examples import example

from jaxseg.models.layers import Linear
from jaxseg.models.qwen2_5_vl import Qwen2_5_VLForConditionalGeneration, save_pretrained
from jaxseg.models.qwen2_5_vl.presets import preset_config
from jaxseg.train.batch import make_policy_batch
from jaxseg.train.checkpoint import Checkpointer, abstract_like
from jaxseg.train.lora import (
    TEXT_TARGETS,
    VISION_TARGETS,
    LoRAConfig,
    LoRALinear,
    adapted,
    adapter_params,
    apply_lora,
    has_lora,
    load_adapters,
    merge_lora,
    merged_params,
    trainable,
)
from jaxseg.train.steps import (
    OptimizerConfig,
    SFTLoss,
    forward_logits,
    make_optimizer,
    train_step,
)

jax.config.update("jax_default_matmul_precision", "highest")
IMG, VID, VS, VE = 90, 91, 92, 93
TEXT_AND_VISION = LoRAConfig(4, 8.0, TEXT_TARGETS + VISION_TARGETS)


def tiny_config():
    return preset_config(
        "nano",
        vocab_size=100,
        image_token_id=IMG,
        video_token_id=VID,
        vision_start_token_id=VS,
        vision_end_token_id=VE,
        tie_word_embeddings=False,
    )


def _model(seed=0):
    return Qwen2_5_VLForConditionalGeneration(tiny_config(), rngs=nnx.Rngs(seed))


@pytest.fixture(scope="module")
def batch():
    cfg = tiny_config()
    rng = np.random.default_rng(0)
    examples = [
        example(rng, n, img, cfg, text_high=80) for n, img in [(10, True), (17, False), (12, True)]
    ]
    return make_policy_batch(examples, config=cfg, length_buckets=(32,))


@nnx.jit
def _jit_logits(model, batch):
    return forward_logits(model, batch)


def _logits(model, batch):
    return np.asarray(_jit_logits(model, batch))


def _perturb(model, seed=3, scale=0.05):
    """Non-zero adapters (B starts at zero, which would hide any merge error)."""
    state = nnx.state(model, nnx.LoRAParam)
    leaves, tree = jax.tree.flatten(state)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    noisy = [x + scale * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys)]
    nnx.update(model, jax.tree.unflatten(tree, noisy))


def _flat(tree):
    return {jax.tree_util.keystr(p): np.asarray(v) for p, v in jax.tree.leaves_with_path(tree)}


def _committed(model):
    """Every variable committed to one device: fresh, restored and updated arrays then reach
    the jitted step with the same placement, so it compiles once for all these tests."""
    state = nnx.state(model)
    nnx.update(model, jax.device_put(state, jax.devices()[0]))
    return model


# one transformation object: the jitted update's cache key holds it, so every optimizer built
# on it reuses one compilation
TX = make_optimizer(OptimizerConfig(learning_rate=1e-2, schedule="constant"))


def _optimizer(model):
    return nnx.Optimizer(model, TX, wrt=trainable(model))


def test_zero_init_b_gives_exactly_the_base_model(batch):
    model = _model()
    base = _logits(model, batch)
    paths = apply_lora(model, TEXT_AND_VISION, rngs=nnx.Rngs(1))
    n_layers = tiny_config().text.num_hidden_layers
    assert sum(p.startswith("language_model.") for p in paths) == 7 * n_layers
    assert any(p.startswith("visual.blocks.") for p in paths)
    assert not any("merger" in p for p in paths)
    # the same function; two differently fused XLA programs (with and without the adapter
    # branch) may sum in another order under a loaded thread pool: fp32 rounding only
    np.testing.assert_allclose(_logits(model, batch), base, rtol=0, atol=1e-6)
    # the base tree is untouched: same paths and values, adapters added beside the kernels
    fresh = nnx.to_pure_dict(nnx.state(_model(), nnx.Param))
    assert _flat(merged_params(model)).keys() == _flat(fresh).keys()
    a = model.language_model.layers[0].self_attn.q_proj.lora.lora_a
    assert a.get_metadata()["out_sharding"] == ("embed", None)


def test_sft_steps_train_only_the_adapters(batch):
    model = _model()
    apply_lora(model, LoRAConfig(4, 8.0), rngs=nnx.Rngs(1))
    _committed(model)
    base_before = _flat(nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.LoRAParam))))
    lora_before = _flat(adapter_params(model))
    opt = _optimizer(model)
    losses = [train_step(model, opt, [batch], SFTLoss())["loss"] for _ in range(6)]
    assert losses[-1] < 0.9 * losses[0], losses
    for k, v in _flat(nnx.to_pure_dict(nnx.state(model, nnx.Not(nnx.LoRAParam)))).items():
        np.testing.assert_array_equal(v, base_before[k], err_msg=k)
    after = _flat(adapter_params(model))
    assert all(not np.array_equal(after[k], lora_before[k]) for k in after)
    # the optimizer holds moments for the adapters only
    opt_leaves = jax.tree.leaves(nnx.state(opt, nnx.optimizer.OptState))
    assert sum(x.size for x in opt_leaves if x.ndim) == 2 * sum(x.size for x in after.values())


def test_merged_model_equals_adapted_model_and_exports_to_transformers(batch, tmp_path):
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration as HF

    model = _model()
    apply_lora(model, TEXT_AND_VISION, rngs=nnx.Rngs(1))
    _perturb(model)
    adapted_logits = _logits(model, batch)
    assert np.abs(adapted_logits - _logits(_model(), batch)).max() > 1e-2  # adapters matter
    expected = merged_params(model)
    assert sorted(merge_lora(model)) and not has_lora(model)
    assert type(model.language_model.layers[0].mlp.up_proj) is Linear
    np.testing.assert_allclose(_logits(model, batch), adapted_logits, atol=1e-5, rtol=0)
    merged = _flat(nnx.to_pure_dict(nnx.state(model, nnx.Param)))
    for k, v in _flat(expected).items():
        np.testing.assert_array_equal(merged[k], v, err_msg=k)

    save_pretrained(model, tmp_path)
    hf = HF.from_pretrained(tmp_path, attn_implementation="eager").eval()
    ids = np.random.default_rng(0).integers(0, 50, (1, 12))
    with torch.no_grad():
        theirs = hf(input_ids=torch.as_tensor(ids)).logits.numpy()
    np.testing.assert_allclose(np.asarray(model(ids)), theirs, atol=1e-4)


@settings(max_examples=12, deadline=None)
@given(
    rank=st.sampled_from([1, 5]),
    alpha=st.floats(0.5, 64.0),
    shape=st.sampled_from([(1, 3), (6, 7)]),
    seed=st.integers(0, 2**16),
)
def test_merged_kernel_is_base_plus_scaled_product(rank, alpha, shape, seed):
    d_in, d_out = shape
    base = Linear(
        d_in,
        d_out,
        use_bias=True,
        axes=("embed", "mlp"),
        dtype=jnp.float32,
        param_dtype=jnp.float32,
        rngs=nnx.Rngs(seed),
    )
    layer = LoRALinear(base, rank=rank, scale=alpha / rank, rngs=nnx.Rngs(seed + 1))
    b = jax.random.normal(jax.random.key(seed), (rank, d_out))
    layer.lora.lora_b.set_value(b)
    a = np.asarray(layer.lora.lora_a[...], np.float64)
    w = np.asarray(layer.kernel[...], np.float64)
    want = w + alpha / rank * a @ np.asarray(b, np.float64)
    np.testing.assert_allclose(np.asarray(layer.merged_kernel()), want, rtol=1e-5, atol=1e-5)
    x = np.random.default_rng(seed).normal(size=(3, d_in)).astype(np.float32)
    plain = x.astype(np.float64) @ want + np.asarray(layer.bias[...], np.float64)
    np.testing.assert_allclose(np.asarray(layer(x)), plain, rtol=1e-4, atol=1e-4)


def _state(model, opt):
    return {
        "params": merged_params(model),
        "opt": nnx.to_pure_dict(nnx.state(opt, nnx.optimizer.OptState)),
        "lora": adapter_params(model),
    }


def test_checkpoint_resume_continues_exactly(batch, tmp_path):
    """Save after 2 steps, continue 2; a fresh base + restored adapters and optimizer continue
    to the same adapters and merged params."""
    cfg = LoRAConfig(4, 8.0)
    model = _model()
    apply_lora(model, cfg, rngs=nnx.Rngs(1))
    _committed(model)
    opt = _optimizer(model)
    for _ in range(2):
        train_step(model, opt, [batch], SFTLoss())
    with Checkpointer(tmp_path / "ckpt", item_names=("params", "opt", "lora")) as ckpt:
        ckpt.save(1, _state(model, opt), {"next_step": 2}, force=True)
    for _ in range(2):
        train_step(model, opt, [batch], SFTLoss())
    want = _state(model, opt)

    resumed = _model()  # the frozen base, rebuilt as on a fresh start
    apply_lora(resumed, cfg, rngs=nnx.Rngs(99))  # different init: restore must overwrite it
    _committed(resumed)
    opt2 = _optimizer(resumed)
    target = {k: v for k, v in _state(resumed, opt2).items() if k != "params"}
    with Checkpointer(tmp_path / "ckpt", item_names=("params", "opt", "lora")) as ckpt:
        restored, meta = ckpt.restore(abstract_like(target))
    assert meta["next_step"] == 2
    load_adapters(resumed, restored["lora"])
    opt_state = nnx.state(opt2, nnx.optimizer.OptState)
    nnx.replace_by_pure_dict(opt_state, restored["opt"])
    nnx.update(opt2, opt_state)
    for _ in range(2):
        train_step(resumed, opt2, [batch], SFTLoss())
    got = _state(resumed, opt2)
    for item in ("lora", "params", "opt"):
        g, w = _flat(got[item]), _flat(want[item])
        assert g.keys() == w.keys()
        for k in w:
            np.testing.assert_array_equal(g[k], w[k], err_msg=f"{item}{k}")


def test_config_errors_name_the_field():
    assert LoRAConfig.from_stage({"lora_rank": 0}, "sft") is None
    assert LoRAConfig.from_stage({}, "sft") is None
    cfg = LoRAConfig.from_stage({"lora_rank": 8, "lora_alpha": None}, "sft")
    assert cfg.scale == 2.0 and cfg.targets == TEXT_TARGETS
    with pytest.raises(ValueError, match="grpo: lora_alpha"):
        LoRAConfig.from_stage({"lora_rank": 8, "lora_alpha": -1.0}, "grpo")
    with pytest.raises(ValueError, match="lora_rank"):
        LoRAConfig(-2, 4.0)
    with pytest.raises(ValueError, match="'qkv_proj' matches no Linear"):
        apply_lora(_model(), LoRAConfig(2, 4.0, ("q_proj", "qkv_proj")), rngs=nnx.Rngs(0))
    model = _model()
    apply_lora(model, LoRAConfig(2, 4.0), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="already carries LoRA"):
        apply_lora(model, LoRAConfig(2, 4.0), rngs=nnx.Rngs(0))


def test_adapted_scope_merges_on_exit_and_rank_zero_is_full_fine_tuning():
    model = _model()
    with adapted(model, None, rngs=nnx.Rngs(0)) as paths:
        assert paths == [] and trainable(model) is nnx.Param
    with (
        pytest.raises(RuntimeError, match="boom"),
        adapted(model, LoRAConfig(2, 4.0), rngs=nnx.Rngs(0)),
    ):
        assert trainable(model) is nnx.LoRAParam
        raise RuntimeError("boom")
    assert not has_lora(model)


# ---------------------------------------------------------------------- trainer, end to end
SMALL = [
    "data.synth.videos=2",
    "data.synth.valid_videos=1",
    "sft.steps=3",
    "sft.num_examples=4",
    "sft.batch_size=2",
    "sft.micro_batch=2",
    "sft.checkpoint_every=1",
    "sft.keep=3",
    "grpo.steps=1",
    "grpo.prompts_per_step=1",
    "grpo.group_size=2",
    "grpo.max_new_tokens=16",
]


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    """demo:quick with LoRA rank 4: SFT 3 steps, a checkpoint each."""
    from jaxseg.commands.train import ensure_data
    from jaxseg.config import load_config
    from jaxseg.train.trainer import Experiment

    root = tmp_path_factory.mktemp("lora_run")
    config = load_config("demo:quick,lora=4", [f"data.root={root / 'data'}", *SMALL])
    ensure_data(config, progress=False)
    exp = Experiment(config, root / "run", progress=False)
    exp.sft()
    assert not has_lora(exp.model)  # merged after the stage
    sft_params = _flat(nnx.to_pure_dict(nnx.state(exp.model, nnx.Param)))
    return root, config, sft_params


def test_trainer_lora_stages_save_merged_params(lora_run):
    from jaxseg.train.learner import ITEMS
    from jaxseg.train.trainer import Experiment

    root, config, sft_params = lora_run
    with Checkpointer(root / "run" / "sft" / "ckpt", item_names=ITEMS) as ckpt:
        assert ckpt.latest_step() == 2
        assert sorted(p.name for p in (ckpt.directory / "2").iterdir() if p.is_dir()) == [
            "lora",
            "meta",
            "opt",
            "params",
        ]
    exp = Experiment.from_workdir(root / "run", progress=False)
    init = _flat(nnx.to_pure_dict(nnx.state(exp.model, nnx.Param)))
    assert exp.load_stage("sft") == 2
    loaded = _flat(nnx.to_pure_dict(nnx.state(exp.model, nnx.Param)))
    assert loaded.keys() == sft_params.keys() == init.keys()
    for k, v in sft_params.items():
        np.testing.assert_array_equal(loaded[k], v, err_msg=k)
    # only the targeted kernels moved away from the initial model
    changed = {k for k in init if not np.array_equal(init[k], loaded[k])}
    assert changed and all(k.split("'")[-2] == "kernel" for k in changed), changed
    assert {k.split("'")[-4] for k in changed} <= set(TEXT_TARGETS)


@pytest.mark.slow
def test_trainer_lora_grpo_stage_starts_from_the_merged_sft(lora_run):
    """GRPO with LoRA on top of the LoRA SFT result (rollouts sample the adapted model)."""
    from jaxseg.train.learner import ITEMS
    from jaxseg.train.trainer import Experiment

    root, config, sft_params = lora_run
    run = root / "grpo_run"
    shutil.copytree(root / "run", run)
    exp = Experiment(config, run, progress=False)
    exp.grpo()
    assert not has_lora(exp.model)
    with Checkpointer(run / "grpo" / "ckpt", item_names=ITEMS) as ckpt:
        assert ckpt.latest_step() == 0 and (ckpt.directory / "0" / "lora").is_dir()
    fresh = Experiment.from_workdir(run, progress=False)
    assert fresh.load_latest() == "grpo"
    grpo = _flat(nnx.to_pure_dict(nnx.state(fresh.model, nnx.Param)))
    assert grpo.keys() == sft_params.keys()
    # the frozen parts (embeddings, norms, vision) are still the SFT values
    for k, v in sft_params.items():
        if "kernel" not in k or "language_model" not in k:
            np.testing.assert_array_equal(grpo[k], v, err_msg=k)


def test_trainer_lora_resume_continues_exactly(lora_run, tmp_path):
    """Drop the last SFT checkpoint (a run killed after step 1 was saved), resume: the same
    merged params and adapters as the uninterrupted run."""
    from jaxseg.train.learner import ITEMS
    from jaxseg.train.trainer import Experiment

    root, config, _ = lora_run
    run = tmp_path / "run"
    shutil.copytree(root / "run" / "sft", run / "sft")
    shutil.copytree(root / "run" / "processor", run / "processor")
    shutil.rmtree(run / "sft" / "ckpt" / "2")
    exp = Experiment(config, run, progress=False)
    exp.sft()

    def final(workdir):
        with Checkpointer(workdir / "sft" / "ckpt", item_names=ITEMS) as ckpt:
            assert ckpt.latest_step() == 2
            import orbax.checkpoint as ocp

            step = ckpt.directory / "2"
            return {i: ocp.StandardCheckpointer().restore(step / i) for i in ("params", "lora")}

    a, b = final(root / "run"), final(run)
    for item in ("params", "lora"):
        fa, fb = _flat(a[item]), _flat(b[item])
        assert fa.keys() == fb.keys()
        for k in fa:
            np.testing.assert_array_equal(fa[k], fb[k], err_msg=f"{item}{k}")


def test_trainer_refuses_to_resume_full_fine_tuning_as_lora(lora_run, tmp_path):
    from jaxseg.train.trainer import Experiment

    root, config, _ = lora_run
    run = tmp_path / "run"
    shutil.copytree(root / "run" / "sft", run / "sft")
    shutil.copytree(root / "run" / "processor", run / "processor")
    full = config.copy_and_resolve_references()
    full.sft.lora_rank = 0
    full.sft.steps = 5
    with pytest.raises(ValueError, match="lora_rank"):
        Experiment(full, run, progress=False).sft()
