"""The [SEG]-route stages for o3 (issue #10 item 3): cold start, GRPO, held-out evaluation.

Built on `jaxseg.train.trainer.Experiment` (processor, Qwen policy, o3 protocol with
answer="seg", mask backend, benchmark sources) plus: SAM2's prompt encoder and mask decoder
(jaxseg.models.sam2), initialised from a SAM2 checkpoint (`seg.decoder_checkpoint`, else
`segmenter.config.checkpoint` when the segmenter is sam2, as VideoSEG-O3 starts from SAM2's
heads; random otherwise) and trained with the policy, the [SEG] projector, and frozen SAM2
image features from the sidecar (`seg.encoder`: the sam2 backend config; model="tiny" is a
randomly initialised encoder).

Mask slots (`seg.sampled_frames`, default on, the released recipe §1(c)): every [SEG] is
decoded on its turn's keyframe (the protocol's per-turn keyframe convention), and the final
turn's last [SEG] is also decoded, memory-free, on each sampled (spatial) frame. The
auxiliary BCE+Dice covers all of them; the sampled-frame masks give R_m
(`O3Config.seg_mask_reward="decoded"`); calibration uses the keyframe slots only.

Cold start: the oracle's o3 traces with `<RefSeg>[SEG]</RefSeg>` answers; loss = token-mean
NLL + mask loss (BCE 2.0 + Dice 0.5, Sa2VA's Stage-I weights, §1(c)) of every mask slot
against the GT.

GRPO step (VideoSEG-O3 §1(c), §1(e)): P prompts x G episodes sampled with the Qwen policy ->
teacher-forced pass decoding each [SEG] on its turn's keyframe (the rollout mask logits R,
memory-free) -> the episode's turn masks (last [SEG] of each turn, sigmoid > 0.5 at native
size) -> the final one propagated both ways by the mask backend as a mask prompt -> o3
rewards -> group advantages -> one update of the SEG-route loss (jaxseg.seg.loss) over all
micro-batches, exact accumulation (denominators on host).

Evaluation: greedy episodes of the evaluation protocol (`Experiment.eval_protocol`, never a
GT-dependent input) on the held-out split, the same decoding and propagation, masks written
as PNGs and scored by jaxseg.eval (J, F, J&F).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, serialization
from ml_collections import ConfigDict

from jaxseg.data.readers.layouts import write_prediction_pngs
from jaxseg.eval.aggregate import summarize
from jaxseg.eval.scoring import score_all
from jaxseg.models.sam2 import SAM2MaskDecoderModule, preset
from jaxseg.models.sam2.weights import load_torch_weights
from jaxseg.protocols.episode import play_episodes, score_episodes
from jaxseg.protocols.o3 import SEG_TOKEN, gt_keyframe_masks
from jaxseg.protocols.policy import without_meta
from jaxseg.protocols.scripted import OraclePolicy
from jaxseg.rl.aggregation import aggregate
from jaxseg.rl.objective import GRPOLossConfig
from jaxseg.sampling.filters import SamplingParams
from jaxseg.segmenter import make_backend
from jaxseg.train.batch import PolicyBatch, make_policy_batch
from jaxseg.train.metrics import MetricsLogger
from jaxseg.train.progress import tqdm  # bars on a terminal, log lines otherwise
from jaxseg.train.rollouts import RecordedEpisode, RecordingPolicy, rollout_example
from jaxseg.train.stages import advantage_of
from jaxseg.train.steps import OptimizerConfig, make_optimizer, sequence_logprobs
from jaxseg.train.trainer import Experiment

from .batch import SegSlots, SlotData, SlotShapes, make_seg_batch, resize_mask, seg_slots
from .calibration import aux_mask_loss, resize_logits
from .features import FeatureStore
from .loss import SegLossConfig, seg_loss_terms, seg_objective
from .policy import SegBatch, SegPolicy

SAMPLED = -1  # the turn of a sampled-frame slot (the final [SEG] on a spatial frame)


def decoder_checkpoint(config: ConfigDict) -> str | None:
    """The SAM2 checkpoint whose prompt encoder + mask decoder start the trained heads:
    `seg.decoder_checkpoint`, else the sam2 segmenter's `checkpoint`; None = random init."""
    path = config.seg.get("decoder_checkpoint") or None
    seg = config.get("segmenter")
    if path is None and seg is not None and seg.get("backend") == "sam2":
        path = seg.config.get("checkpoint") or None
    return None if path is None else str(path)


# ----------------------------------------------------------------------------- jitted pieces
@nnx.jit
def _mask_logits(policy: SegPolicy, batch: SegBatch) -> jax.Array:
    return policy(batch).mask_logits


@nnx.jit
def _text_logprobs(model, batch: PolicyBatch) -> jax.Array:
    return sequence_logprobs(model, batch)


@nnx.jit(static_argnames=("cfg",))
def _grpo_grads(policy, batch: SegBatch, denoms, cfg: SegLossConfig):
    def objective(p):
        terms = seg_loss_terms(p(batch), batch, cfg)
        value = seg_objective(terms, cfg.grpo.kl_coef, denoms[0], denoms[1])
        return value, terms

    (value, terms), grads = nnx.value_and_grad(objective, has_aux=True)(policy)
    return value, grads, terms


@nnx.jit(static_argnames=("mask_weight",))
def _sft_grads(policy, batch: SegBatch, denoms, mask_weight: float):
    def objective(p):
        fwd = p(batch)
        nll = aggregate(-fwd.logp, batch.policy.loss_mask, "token-mean")
        aux, _ = aux_mask_loss(fwd.mask_logits, batch.gt_masks, batch.gt_valid, weight=mask_weight)
        value = nll.total / denoms[0] + aux / jnp.maximum(denoms[1], 1.0)
        return value, (nll.total, aux)

    (value, parts), grads = nnx.value_and_grad(objective, has_aux=True)(policy)
    return value, grads, parts


@nnx.jit
def _apply(optimizer: nnx.Optimizer, policy, grads):
    optimizer.update(policy, grads)
    return jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in jax.tree.leaves(grads)))


@jax.jit
def _add(a, b):
    return jax.tree.map(jnp.add, a, b)


# ----------------------------------------------------------------------------- episodes
@dataclasses.dataclass
class SegEpisode:
    """One played episode with what training needs: the environment (turn keyframes), the
    conversation and per-turn policy info, the sample index, and its [SEG] slots."""

    episode: Any
    conversation: list
    turn_info: list
    owner: int
    example: dict | None = None
    slots: SegSlots | None = None


@dataclasses.dataclass(frozen=True)
class _Key:
    sample_key: str


class SegTrainer:
    """Owns the Experiment, the SegPolicy and the feature store; `sft`, `grpo`, `evaluate`."""

    def __init__(self, config: ConfigDict, workdir: str | Path, *, progress: bool = True):
        if config.protocol.name != "o3" or config.protocol.config.get("answer") != "seg":
            raise ValueError(
                "seg training needs protocol.name='o3' and protocol.config.answer='seg'"
            )
        self.config = config
        self.exp = Experiment(config, workdir, progress=progress)
        self.workdir = self.exp.workdir
        self.progress = progress
        tok = self.exp.processor.tokenizer
        self.seg_id = int(tok.convert_tokens_to_ids(SEG_TOKEN))
        if tok.decode([self.seg_id]) != SEG_TOKEN:
            raise ValueError(f"processor tokenizer has no {SEG_TOKEN} token (add it: resize.py)")
        s = config.seg
        dcfg = preset(s.decoder_preset, **dict(s.get("decoder_args", {})))
        seed = int(config.seed)
        decoder = SAM2MaskDecoderModule(dcfg, nnx.Rngs(seed + 1))
        self.decoder_source = decoder_checkpoint(config)
        if self.decoder_source is not None:  # strict: the preset must match the checkpoint
            load_torch_weights(decoder, self.decoder_source)
        self.sampled_frames = bool(s.get("sampled_frames", True))
        self.policy = SegPolicy(
            self.exp.model, decoder, prompt_dim=dcfg.transformer_dim, rngs=nnx.Rngs(seed + 2)
        )
        self.shapes = SlotShapes.for_decoder(dcfg.transformer_dim, dcfg.image_embedding_size)
        self.features = FeatureStore(make_backend("sam2", dict(s.encoder), cache_entries=0))
        self.protocol = self.exp.protocol
        self.eval_protocol = self.exp.eval_protocol

    # ------------------------------------------------------------------ episodes -> rows
    def play(
        self, policy, samples, *, group_size: int, seed: int, protocol=None
    ) -> list[SegEpisode]:
        recorder = RecordingPolicy(policy)
        episodes, owners = play_episodes(
            protocol or self.protocol, recorder, samples, group_size=group_size, seed=seed
        )
        state = recorder.state
        return [
            SegEpisode(ep, conv, info, o)
            for ep, conv, info, o in zip(
                episodes, state.conversations, state.turn_info, owners, strict=True
            )
        ]

    def _slot_data(self, e: SegEpisode, sample, rollout: np.ndarray | None = None) -> SlotData:
        slots = e.slots
        spatial = iter(e.episode.opening.context["spatial"])
        keys = [next(spatial) if t == SAMPLED else e.episode.turn_keyframes[t] for t in slots.turn]
        size = self.shapes.mask[0]
        if keys:
            embed, hr0, hr1 = self.features.get(sample.frames, keys)
            gt = np.stack([resize_mask(sample.target_masks[k], size) for k in keys])
        else:
            embed = np.zeros((0,) + self.shapes.embed, np.float32)
            hr0 = np.zeros((0,) + self.shapes.hr0, np.float32)
            hr1 = np.zeros((0,) + self.shapes.hr1, np.float32)
            gt = np.zeros((0,) + self.shapes.mask, np.float32)
        return SlotData(slots, embed, hr0, hr1, gt, rollout)

    def _policy_batch(self, examples: list[dict]) -> PolicyBatch:
        return make_policy_batch(
            examples, config=self.exp.model.config, pad_id=self.exp.ids["pad_token_id"]
        )

    def _with_slots(self, e: SegEpisode, example: dict) -> None:
        """The episode's mask slots: every [SEG] on its turn's keyframe, then (sampled_frames)
        the final turn's last [SEG] on each spatial frame."""
        e.example = example
        slots = seg_slots(
            example["input_ids"], example["policy_mask"], self.seg_id, len(e.episode.texts)
        )
        final = slots.index[slots.turn == len(e.episode.texts) - 1]
        if self.sampled_frames and len(final):
            n = len(e.episode.opening.context["spatial"])
            slots = SegSlots(
                np.concatenate([slots.index, np.full(n, final[-1])]).astype(np.int32),
                np.concatenate([slots.turn, np.full(n, SAMPLED)]).astype(np.int32),
            )
        e.slots = slots

    def decode_rollouts(
        self, eps: list[SegEpisode], samples, micro: int, protocol=None
    ) -> list[np.ndarray]:
        """Rollout mask logits R [n_i, S, S] per episode (teacher-forced, no gradient), and
        for the environment each episode's turn masks (last [SEG] of each turn) and its
        final [SEG]'s masks on the sampled frames (R_m)."""
        out: list[np.ndarray] = []
        for i in range(0, len(eps), micro):
            part = eps[i : i + micro]
            rows = [self._slot_data(e, samples[e.owner]) for e in part]
            if not any(len(r.slots.index) for r in rows):
                out += [np.zeros((0,) + self.shapes.mask, np.float32) for _ in part]
                continue
            batch = make_seg_batch(self._policy_batch([e.example for e in part]), rows, self.shapes)
            logits = np.asarray(_mask_logits(self.policy, batch))
            out += [logits[b, : len(r.slots.index)] for b, r in enumerate(rows)]
        masks, sampled = {}, {}
        for e, r in zip(eps, out, strict=True):
            s = samples[e.owner]
            turn_masks: list[np.ndarray | None] = [None] * len(e.episode.texts)
            frames: list[np.ndarray] = []
            for j, t in enumerate(e.slots.turn):  # later [SEG]s of a turn overwrite earlier
                up = np.asarray(resize_logits(jnp.asarray(r[j]), (s.height, s.width)) > 0.0)
                if t == SAMPLED:
                    frames.append(up)
                else:
                    turn_masks[int(t)] = up
            masks[id(e.episode)] = turn_masks
            n = len(e.episode.opening.context["spatial"])
            empty = np.zeros((s.height, s.width), bool)
            sampled[id(e.episode)] = frames or [empty] * n  # no final [SEG]: no mask
        protocol = protocol or self.protocol
        protocol.seg_masks = lambda ep: masks[id(ep)]
        protocol.seg_sampled_masks = (lambda ep: sampled[id(ep)]) if self.sampled_frames else None
        return out

    # ------------------------------------------------------------------ optimisation
    def _optimizer(self, lr: float, steps: int, warmup: int = 0, schedule: str = "constant"):
        cfg = OptimizerConfig(
            learning_rate=lr, warmup_steps=warmup, total_steps=steps, schedule=schedule
        )
        return nnx.Optimizer(self.policy, make_optimizer(cfg), wrt=nnx.Param)

    def sft(self) -> dict[str, Any]:
        c = self.config.sft
        source = self.exp.source(self.config.data.train_split)
        self.protocol.seg_masks = gt_keyframe_masks
        samples = [source[i % len(source)] for i in range(c.num_examples)]
        eps: list[SegEpisode] = []
        bar = tqdm(total=len(samples), desc="seg cold-start traces", disable=not self.progress)
        for start in range(0, len(samples), 16):
            part = samples[start : start + 16]
            for e in self.play(OraclePolicy(self.protocol, part), part, group_size=1, seed=0):
                e.owner += start
                example = self.exp.encoder.encode(without_meta(e.conversation)).as_example()
                self._with_slots(e, example)
                eps.append(e)
            bar.update(len(part))
        bar.close()
        if c.get("init_params"):  # continue a cold start (its saved params.msgpack)
            self.load_params(Path(c.init_params))
        optimizer = self._optimizer(c.learning_rate, c.steps, c.warmup_steps, "cosine")
        rng = np.random.default_rng(int(self.config.seed))
        with MetricsLogger(self.workdir / "sft") as log:
            for step in tqdm(range(c.steps), desc="seg sft", disable=not self.progress):
                chosen = [eps[j] for j in rng.choice(len(eps), c.batch_size, replace=False)]
                t0 = time.perf_counter()
                m = self._sft_step(optimizer, chosen, samples, c.micro_batch, c.mask_weight)
                m["step_time"] = time.perf_counter() - t0
                log.log("train", step, m)
        return {"stage": "sft", "steps": c.steps, "last": m}

    def _sft_step(self, optimizer, eps, samples, micro, mask_weight) -> dict[str, float]:
        batches = []
        for i in range(0, len(eps), micro):
            part = eps[i : i + micro]
            rows = [self._slot_data(e, samples[e.owner]) for e in part]
            pb = self._policy_batch([e.example for e in part])
            batches.append(make_seg_batch(pb, rows, self.shapes))
        tokens = sum(float(b.policy.loss_mask.sum()) for b in batches)
        masks = sum(float(b.gt_valid.sum()) for b in batches)
        denoms = jnp.asarray([tokens, max(masks, 1.0)], jnp.float32)
        grads, nll, aux = None, 0.0, 0.0
        for b in batches:
            _, g, (n, a) = _sft_grads(self.policy, b, denoms, float(mask_weight))
            grads = g if grads is None else _add(grads, g)
            nll, aux = nll + float(n), aux + float(a)
        norm = float(_apply(optimizer, self.policy, grads))
        return {"nll": nll / tokens, "mask_loss": aux / max(masks, 1.0), "grad_norm": norm}

    def grpo(self, loss: SegLossConfig, *, tag: str) -> dict[str, Any]:
        """GRPO from the current weights (the caller restores the cold-start state between
        variants); metrics under <workdir>/<tag>/."""
        c = self.config.grpo
        reference = nnx.clone(self.exp.model)
        optimizer = self._optimizer(c.learning_rate, c.steps)
        advantage_fn = advantage_of(c)  # grpo.advantage_eps: VideoSEG-O3's 1e-4
        sampling = SamplingParams(temperature=c.temperature, top_k=c.top_k, top_p=c.top_p)
        source = self.exp.source(self.config.data.train_split)
        batches = source.batches(c.prompts_per_step, int(self.config.seed), 0)
        with MetricsLogger(self.workdir / tag) as log:
            for step in tqdm(range(c.steps), desc=tag, disable=not self.progress):
                _, positions = next(batches)
                samples = [source[i] for i in positions]
                m = self._grpo_step(
                    optimizer, reference, samples, sampling, advantage_fn, loss, step
                )
                log.log("train", step, m)
        return {"stage": tag, "steps": c.steps, "last": m}

    def _grpo_step(self, optimizer, reference, samples, sampling, advantage_fn, loss, step):
        c = self.config.grpo
        t0 = time.perf_counter()
        sampler = self.exp.policy(
            sampling=sampling,
            max_new_tokens=c.max_new_tokens,
            seed=int(self.config.seed) * 100_003 + step,
        )
        eps = self.play(sampler, samples, group_size=c.group_size, seed=step)
        improc = self.exp.processor.image_processor
        for e in eps:
            rec = RecordedEpisode(_Key(e.episode.sample.key), e.conversation, e.turn_info)
            self._with_slots(e, rollout_example(rec, improc, advantage=0.0))
        rollouts = self.decode_rollouts(eps, samples, c.micro_batch)
        traces = score_episodes(
            self.protocol,
            [e.episode for e in eps],
            [e.owner for e in eps],
            samples,
            self.exp.backend,
        )
        t_rollout = time.perf_counter() - t0
        rewards = jnp.asarray([t.total for t in traces], jnp.float32)
        adv = np.asarray(advantage_fn(rewards, c.group_size))
        batches = []
        for i in range(0, len(eps), c.micro_batch):
            part = list(range(i, min(i + c.micro_batch, len(eps))))
            for j in part:
                eps[j].example["advantage"] = float(adv[j])
            pb = self._policy_batch([eps[j].example for j in part])
            if loss.grpo.kl_coef > 0:
                pb = pb.replace(ref_logp=np.asarray(_text_logprobs(reference, pb)))
            rows = [self._slot_data(eps[j], samples[eps[j].owner], rollouts[j]) for j in part]
            batches.append(make_seg_batch(pb, rows, self.shapes))
        g = loss.grpo
        denom = sum(
            float(
                aggregate(
                    np.zeros_like(b.policy.loss_mask),
                    b.policy.loss_mask,
                    g.aggregation,
                    norm_length=g.norm_length,
                ).weight
            )
            for b in batches
        )
        masks = sum(float((b.gt_valid).sum()) for b in batches)
        denoms = jnp.asarray([denom, max(masks, 1.0)], jnp.float32)
        t1 = time.perf_counter()
        grads, sums = None, {"loss": 0.0, "policy": 0.0, "kl": 0.0, "aux": 0.0, "mask_ll": 0.0}
        for b in batches:
            value, gr, terms = _grpo_grads(self.policy, b, denoms, loss)
            grads = gr if grads is None else _add(grads, gr)
            sums["loss"] += float(value)
            sums["policy"] += float(terms.policy.total) / denom
            sums["kl"] += float(terms.kl.total) / denom
            sums["aux"] += float(terms.aux.total) / max(masks, 1.0)
            sums["mask_ll"] += float(terms.mask_ll.sum()) / max(masks, 1.0)
        sums["grad_norm"] = float(_apply(optimizer, self.policy, grads))
        sums["reward/mean"] = float(rewards.mean())
        sums["reward/std"] = float(rewards.std())
        sums["J"] = float(np.mean([t.metrics["J"] for t in traces]))
        sums["turns"] = float(np.mean([t.metrics["turns"] for t in traces]))
        sums["seg_per_episode"] = masks / len(eps)
        sums["parse_ok"] = float(
            np.mean([r.parse_status.startswith("ok") for t in traces for r in t.turns])
        )
        sums["time/rollout"] = t_rollout
        sums["time/update"] = time.perf_counter() - t1
        return sums

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, tag: str) -> dict[str, Any]:
        e = self.config.eval
        source = self.exp.source(self.config.data.eval_split)
        positions = list(range(min(len(source), e.max_expressions)))
        out = self.workdir / "eval" / tag
        pred_root = out / "pred"
        traces_all = []
        policy = self.exp.policy(
            sampling=SamplingParams(temperature=0.0),
            max_new_tokens=self.config.grpo.max_new_tokens,
            seed=0,
        )
        improc = self.exp.processor.image_processor
        for start in range(0, len(positions), e.chunk):
            part = positions[start : start + e.chunk]
            samples = [source[i] for i in part]
            eps = self.play(policy, samples, group_size=1, seed=start, protocol=self.eval_protocol)
            for ep in eps:
                rec = RecordedEpisode(_Key(ep.episode.sample.key), ep.conversation, ep.turn_info)
                self._with_slots(ep, rollout_example(rec, improc, advantage=0.0))
            self.decode_rollouts(eps, samples, e.chunk, protocol=self.eval_protocol)
            traces = score_episodes(
                self.eval_protocol,
                [x.episode for x in eps],
                [x.owner for x in eps],
                samples,
                self.exp.backend,
            )
            for i, tr in zip(part, traces):
                r = source.record(i)
                write_prediction_pngs(pred_root, r.video_id, r.exp_id, r.frame_names, tr.pred_masks)
            traces_all += traces
        records = [source.record(i) for i in positions]
        scores, _ = score_all(records, pred_root)
        summary = summarize(scores, records[0].dataset)
        summary["tag"] = tag
        summary["reward_mean"] = float(np.mean([t.total for t in traces_all]))
        summary["parse_ok"] = float(
            np.mean(
                [
                    r.parse_status.startswith("ok") or r.parse_status == "no_target"
                    for t in traces_all
                    for r in t.turns
                ]
            )
        )
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        with (out / "traces.jsonl").open("w") as f:
            for t in traces_all:
                f.write(json.dumps(t.to_json()) + "\n")
        return summary

    # ------------------------------------------------------------------ state
    def snapshot(self):
        return jax.tree.map(lambda x: x, nnx.state(self.policy, nnx.Param))

    def restore(self, snapshot) -> None:
        nnx.update(self.policy, snapshot)

    def save_params(self, path: Path) -> None:
        """All trainable parameters (policy, projector, decoder) as msgpack."""
        pure = jax.device_get(nnx.to_pure_dict(nnx.state(self.policy, nnx.Param)))
        Path(path).write_bytes(serialization.msgpack_serialize(pure))

    def load_params(self, path: Path) -> None:
        params = nnx.state(self.policy, nnx.Param)
        nnx.replace_by_pure_dict(params, serialization.msgpack_restore(Path(path).read_bytes()))
        nnx.update(self.policy, params)

    def close(self) -> None:
        self.features.backend.close()


def loss_config(config: ConfigDict, *, calibrate: bool) -> SegLossConfig:
    g, s = config.grpo, config.seg
    return SegLossConfig(
        grpo=GRPOLossConfig(
            policy_loss=g.policy_loss,
            eps_low=g.eps_low,
            eps_high=g.eps_high,
            kl_estimator=g.kl_estimator,
            kl_coef=g.kl_coef,
            aggregation=g.aggregation,
        ),
        calibrate=calibrate,
        grid=s.grid,
        aux_weight=s.aux_weight,
    )


def calibration_ablation(config: ConfigDict, workdir: str | Path, *, progress: bool = True):
    """Cold start once, then GRPO with calibration on and with it off from the same weights;
    each evaluated on the held-out split. Returns {"sft": .., "calibrated": .., "uncalibrated": ..}
    summaries and writes <workdir>/ablation.json. Resumable at stage granularity: the
    cold-start params (sft/params.msgpack) and finished stages (ablation_partial.json) are
    reused by a rerun on the same workdir."""
    trainer = SegTrainer(config, workdir, progress=progress)
    workdir = Path(workdir)
    partial = workdir / "ablation_partial.json"
    results = json.loads(partial.read_text()) if partial.is_file() else {}
    sft_params = workdir / "sft" / "params.msgpack"

    def done(key, value):
        results[key] = value
        partial.write_text(json.dumps(results, indent=2, default=str))

    try:
        if sft_params.is_file():  # resume: the cold start is done
            trainer.load_params(sft_params)
        else:
            done("sft_train", trainer.sft())
            trainer.save_params(sft_params)
        if "sft" not in results:
            done("sft", trainer.evaluate("sft"))
        start = trainer.snapshot()
        for name, calibrate in (("calibrated", True), ("uncalibrated", False)):
            if name in results:
                continue
            trainer.restore(start)
            done(
                f"{name}_train",
                trainer.grpo(loss_config(config, calibrate=calibrate), tag=f"grpo_{name}"),
            )
            done(name, trainer.evaluate(name))
    finally:
        trainer.close()
    (workdir / "ablation.json").write_text(json.dumps(results, indent=2, default=str))
    return results
