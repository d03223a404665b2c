"""The [SEG]-route trainer: GRPO steps and evaluation on the synthetic benchmark with a
policy that writes the oracle's tokens (so every turn has a [SEG]), tiny random SAM2
features from the sidecar; the whole route through the learner on an 8-device mesh, resumed.
Slow: it starts the sidecar and compiles the steps."""

import json
import shutil

import numpy as np
import pytest

from jaxseg.protocols.policy import last_user_meta, message, text_part
from jaxseg.sampling.policy import SamplerPolicy

pytestmark = pytest.mark.slow


class OracleTokenPolicy(SamplerPolicy):
    """A SamplerPolicy whose 'sampled' tokens are the oracle's turn, tokenized (log-probs 0):
    the same turn_info layout the trainer reads from real rollouts."""

    def respond(self, state, stop=()):
        out = [None] * state.num_episodes
        for i in state.active_indices():
            conv = state.conversations[i]
            seg = self._appended_segment(state, i) if state.turn_info[i] else state.prompts[i]
            sample = self.samples[last_user_meta(conv)["sample_key"]]
            text = self.protocol.oracle_turn(sample, conv)
            ids = self.tokenizer.encode(text, add_special_tokens=False)
            conv.append(message("assistant", [text_part(text)]))
            state.cached_messages[i] = len(conv)
            state.ended_with_eos[i] = False
            state.turn_info[i].append(
                {"segment_ids": list(seg.input_ids), "token_ids": ids, "logprobs": [0.0] * len(ids)}
            )
            out[i] = text
        return out


def _optimizer(trainer):
    from flax import nnx

    from jaxseg.train.steps import OptimizerConfig, make_optimizer

    cfg = OptimizerConfig(learning_rate=1e-3, total_steps=1, schedule="constant")
    return nnx.Optimizer(trainer.policy, make_optimizer(cfg), wrt=nnx.Param)


def _grpo_step(trainer, config, samples, reference):
    from jaxseg.data.pipeline import StepData
    from jaxseg.seg.train import SegGRPOPiece, loss_config

    piece = SegGRPOPiece(trainer, loss_config(config, calibrate=True), "grpo", reference)
    return piece.step(StepData(0, 0, list(range(len(samples))), samples), _optimizer(trainer))


def _decoder_params(trainer):
    import jax
    from flax import nnx

    leaves = jax.tree.leaves(nnx.state(trainer.policy.decoder, nnx.Param))
    return np.concatenate([np.ravel(np.asarray(x)) for x in leaves])


def test_grpo_step_and_evaluation_with_seg_answers(tmp_path):
    from jaxseg.commands.train import ensure_data
    from jaxseg.config import load_config
    from jaxseg.seg.train import SegTrainer

    config = load_config(
        "o3_seg:quick",
        [f"data.root={tmp_path / 'data'}", "grpo.group_size=2", "eval.max_expressions=2"],
    )
    ensure_data(config, progress=False)
    trainer = SegTrainer(config, tmp_path / "run", progress=False)
    try:
        source = trainer.exp.source("train")
        samples = [s for s in (source[i] for i in range(len(source))) if not s.is_null][:2]

        def oracle_policy(**kw):
            p = OracleTokenPolicy.for_model(trainer.exp.model, trainer.exp.processor, **kw)
            p.protocol, p.samples = trainer.protocol, {s.key: s for s in samples + eval_samples}
            return p

        eval_source = trainer.exp.source("valid")
        eval_samples = [eval_source[i] for i in range(2)]
        trainer.exp.policy = oracle_policy
        before = _decoder_params(trainer)
        m = _grpo_step(trainer, config, samples, trainer.exp.model)
        assert m["seg_per_episode"] >= 1.0 and m["parse_ok"] == 1.0
        assert np.isfinite(m["loss"]) and m["mask_ll"] < 0 and m["aux"] > 0
        after = _decoder_params(trainer)
        assert np.abs(after - before).max() > 0  # the decoder trained
        summary = trainer.evaluate("smoke")
        assert summary["parse_ok"] == 1.0 and "JF" in summary["overall"]
    finally:
        trainer.close()


def test_grpo_step_with_heads_from_a_sam2_checkpoint(tmp_path):
    """The heads start from a (tiny, random) SAM2 checkpoint, every mask
    slot (turn keyframes + the 5 sampled frames) is decoded, R_m reads the decoded
    sampled-frame masks, and one GRPO step trains."""
    import jax
    from flax import nnx

    from jaxseg.commands.train import ensure_data
    from jaxseg.config import load_config
    from jaxseg.models.sam2 import SAM2MaskDecoderModule, preset
    from jaxseg.models.sam2.weights import save_torch_checkpoint
    from jaxseg.seg.train import SAMPLED, SegTrainer

    ckpt = tmp_path / "sam2_tiny_random.pt"
    heads = SAM2MaskDecoderModule(preset("hiera_tiny", image_size=256), nnx.Rngs(1234))
    save_torch_checkpoint(heads, ckpt)
    config = load_config(
        "o3_seg:quick",
        [f"data.root={tmp_path / 'data'}", "grpo.group_size=2", f"seg.decoder_checkpoint={ckpt}"],
    )
    assert config.protocol.config.spatial_frames == 5
    ensure_data(config, progress=False)
    trainer = SegTrainer(config, tmp_path / "run", progress=False)
    try:
        assert trainer.decoder_source == str(ckpt)
        want = jax.tree.leaves(nnx.state(heads, nnx.Param))
        got = jax.tree.leaves(nnx.state(trainer.policy.decoder, nnx.Param))
        assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(want, got))
        source = trainer.exp.source("train")
        samples = [s for s in (source[i] for i in range(len(source))) if not s.is_null][:2]

        def oracle_policy(**kw):
            p = OracleTokenPolicy.for_model(trainer.exp.model, trainer.exp.processor, **kw)
            p.protocol, p.samples = trainer.protocol, {s.key: s for s in samples}
            return p

        trainer.exp.policy = oracle_policy
        seen = {}
        play = trainer.play

        def recording_play(*a, **kw):
            eps = play(*a, **kw)
            seen["eps"] = eps
            return eps

        trainer.play = recording_play
        before = _decoder_params(trainer)
        m = _grpo_step(trainer, config, samples, trainer.exp.model)
        for e in seen["eps"]:
            turns = len(e.episode.texts)
            assert list(e.slots.turn).count(SAMPLED) == 5  # the final [SEG] on 5 frames
            assert len(e.slots.turn) == turns + 5
            decoded = trainer.protocol.seg_sampled_masks(e.episode)
            assert len(decoded) == 5 and decoded[0].shape == e.episode.sample.frames.shape[1:3]
        assert m["seg_per_episode"] >= 6.0 and np.isfinite(m["loss"]) and m["aux"] > 0
        assert np.abs(_decoder_params(trainer) - before).max() > 0
    finally:
        trainer.close()


def test_seg_route_on_an_8_device_mesh_resumes_exactly(tmp_path):
    """Cold start and GRPO of the [SEG] route through the learner on a (2, 2, 2) mesh of 8
    devices: params and heads live on the mesh, every stage checkpoints with its data
    position, and a GRPO run cut after step 0 resumes to the uninterrupted run's params."""
    import jax
    from flax import nnx
    from ml_collections import ConfigDict

    from jaxseg.commands.train import ensure_data
    from jaxseg.config import load_config
    from jaxseg.seg.train import SegTrainer, loss_config

    assert jax.device_count() >= 8
    config = load_config(
        "o3_seg:quick",
        [
            f"data.root={tmp_path / 'data'}",
            "sft.steps=1",
            "sft.num_examples=4",
            "grpo.group_size=2",
            "grpo.steps=2",
            "grpo.checkpoint_every=1",
            "grpo.eval_every=0",
            "eval.max_expressions=2",
        ],
    )
    config.mesh = ConfigDict(dict(ici=(2, 2, 2)))
    ensure_data(config, progress=False)
    run = tmp_path / "run"
    trainer = SegTrainer(config, run, progress=False)
    try:
        source = trainer.exp.source("train")
        samples = {source[i].key: source[i] for i in range(len(source))}

        def oracle_policy(**kw):
            p = OracleTokenPolicy.for_model(trainer.exp.model, trainer.exp.processor, **kw)
            p.protocol, p.samples = trainer.protocol, samples
            return p

        trainer.exp.policy = oracle_policy
        assert trainer.exp.mesh.devices.size == 8
        assert trainer.sft()["step"] == config.sft.steps
        loss = loss_config(config, calibrate=True)
        trainer.grpo(loss, tag="grpo_a")
        params = lambda: {  # noqa: E731
            jax.tree_util.keystr(k): np.asarray(v)
            for k, v in jax.tree_util.tree_leaves_with_path(
                nnx.to_pure_dict(nnx.state(trainer.policy, nnx.Param))
            )
        }
        embed = trainer.exp.model.language_model.embed_tokens.embedding.value
        assert len(embed.sharding.device_set) == 8  # the policy lives on the mesh
        want = params()
        ckpt = run / "grpo_a" / "ckpt"
        meta = json.loads((ckpt / "1" / "meta" / "metadata").read_text())
        assert meta["next_step"] == 2 and meta["data"] == {"next_index": 2}
        shutil.rmtree(ckpt / "1")  # the run was cut after step 0's checkpoint
        trainer.grpo(loss, tag="grpo_a")  # restarts from the cold start, resumes at step 1
        got = params()
        assert want.keys() == got.keys()
        for k in want:
            np.testing.assert_allclose(got[k], want[k], atol=1e-6, rtol=0, err_msg=k)
        lines = (run / "grpo_a" / "metrics.jsonl").read_text().splitlines()
        steps = [json.loads(x)["step"] for x in lines if json.loads(x)["kind"] == "train"]
        assert steps == [0, 1]  # step 1 ran again, its first record rewound
    finally:
        trainer.close()
