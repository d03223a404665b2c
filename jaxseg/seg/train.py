"""The [SEG]-route stages for o3: cold start, GRPO, held-out evaluation.

Built on `jaxseg.train.trainer.Experiment` (processor, Qwen policy on the run's mesh, o3
protocol with answer="seg", mask backend, benchmark sources) and its learner
(jaxseg.train.learner: the cold start and each GRPO variant are pieces, `SegSFTPiece` and
`SegGRPOPiece`, so they get meshes, LoRA on the language model, remat, checkpoints with
resume, metrics and periodic evaluation like the text route; the trained module is the
`SegPolicy`, the policy plus the heads) plus: SAM2's prompt encoder and mask decoder
(jaxseg.models.sam2), initialised from a SAM2 checkpoint (`seg.decoder_checkpoint`, else
`segmenter.config.checkpoint` when the segmenter is sam2, as VideoSEG-O3 starts from SAM2's
heads; random otherwise) and trained with the policy, the [SEG] projector, and frozen SAM2
image features from the sidecar (`seg.encoder`: the sam2 backend config; model="tiny" is a
randomly initialised encoder).

Mask slots (`seg.sampled_frames`, default on, the released recipe VideoSEG-O3 arXiv 2606.06819, training): every [SEG] is
decoded on its turn's keyframe (the protocol's per-turn keyframe convention), and the final
turn's last [SEG] is also decoded, memory-free, on each sampled (spatial) frame. The
auxiliary BCE+Dice covers all of them; the sampled-frame masks give R_m
(`O3Config.seg_mask_reward="decoded"`); calibration uses the keyframe slots only.

Cold start: the oracle's o3 traces with `<RefSeg>[SEG]</RefSeg>` answers; loss = token-mean
NLL + mask loss (BCE 2.0 + Dice 0.5, Sa2VA's Stage-I weights, VideoSEG-O3 arXiv 2606.06819, training) of every mask slot
against the GT.

GRPO step (VideoSEG-O3 arXiv 2606.06819, training and [SEG] decoding): P prompts x G episodes sampled with the Qwen policy ->
teacher-forced pass decoding each [SEG] on its turn's keyframe (the rollout mask logits R,
memory-free) -> the episode's turn masks (last [SEG] of each turn, sigmoid > 0.5 at native
size) -> the final one propagated both ways by the mask backend as a mask prompt -> o3
rewards -> group advantages -> one update of the SEG-route loss (jaxseg.seg.loss) over all
micro-batches through jaxseg.train.steps.train_step (`SegStepLoss`: exact accumulation with
the step's two denominators, policy tokens and masks, computed on host).

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

import grain
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from ml_collections import ConfigDict

from jaxseg.data.pipeline import ShuffledSteps, StepData, step_feed
from jaxseg.data.readers.layouts import write_prediction_pngs
from jaxseg.eval.aggregate import summarize
from jaxseg.eval.scoring import score_all
from jaxseg.models.sam2 import SAM2MaskDecoderModule, preset
from jaxseg.models.sam2.weights import load_torch_weights
from jaxseg.parallel.placement import place_batch
from jaxseg.parallel.rules import batch_sharding
from jaxseg.protocols.episode import play_episodes, score_episodes
from jaxseg.protocols.o3 import SEG_TOKEN, gt_keyframe_masks
from jaxseg.protocols.policy import without_meta
from jaxseg.protocols.scripted import OraclePolicy
from jaxseg.rl.aggregation import aggregate
from jaxseg.rl.objective import GRPOLossConfig
from jaxseg.sampling.filters import SamplingParams
from jaxseg.segmenter import make_backend
from jaxseg.train.batch import PolicyBatch, make_policy_batch
from jaxseg.train.progress import tqdm  # bars on a terminal, log lines otherwise
from jaxseg.train.rollouts import RecordedEpisode, RecordingPolicy, rollout_example
from jaxseg.train.stages import advantage_of
from jaxseg.train.steps import reference_logprobs, train_step
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


def place_seg_batch(batch: SegBatch, mesh) -> SegBatch:
    """A SegBatch on the mesh: its PolicyBatch as the text route places it, the per-row slot
    arrays (`[B, K, ...]`) with their rows over data x fsdp (replicated where not divisible)."""
    if mesh is None:
        return batch
    rows = lambda x: jax.device_put(x, batch_sharding(np.shape(x), mesh))  # noqa: E731
    slots = {f: jax.tree.map(rows, getattr(batch, f)) for f in SLOT_FIELDS}
    return batch.replace(policy=place_batch(batch.policy, mesh), **slots)


SLOT_FIELDS = (
    "seg_index",
    "mask_count",
    "image_embed",
    "high_res_feats",
    "rollout_logits",
    "gt_masks",
    "gt_valid",
)


@dataclasses.dataclass(frozen=True)
class SegStepLoss:
    """The SEG-route GRPO loss as a jaxseg.train.steps `StepLoss`: denominators [policy
    tokens' aggregation weight, decoded masks]."""

    config: SegLossConfig

    def weights(self, batch: SegBatch) -> np.ndarray:
        g, mask = self.config.grpo, np.asarray(batch.policy.loss_mask)
        tokens = aggregate(np.zeros_like(mask), mask, g.aggregation, norm_length=g.norm_length)
        return np.asarray([float(tokens.weight), float(np.sum(batch.gt_valid))], np.float64)

    def objective(self, model, batch: SegBatch, denoms):
        terms = seg_loss_terms(model(batch), batch, self.config)
        value = seg_objective(terms, self.config.grpo.kl_coef, denoms[0], denoms[1])
        return value, {
            "policy": terms.policy.total,
            "kl": terms.kl.total,
            "aux": terms.aux.total,
            "mask_ll": terms.mask_ll.sum(),
        }

    def metrics(self, sums: dict[str, float], denoms: np.ndarray) -> dict[str, float]:
        masks = max(float(denoms[1]), 1.0)
        return {
            "denominator": float(denoms[0]),
            "policy": sums["policy"] / float(denoms[0]),
            "kl": sums["kl"] / float(denoms[0]),
            "aux": sums["aux"] / masks,
            "mask_ll": sums["mask_ll"] / masks,
        }

    def place(self, batch: SegBatch, mesh) -> SegBatch:
        return place_seg_batch(batch, mesh)


@dataclasses.dataclass(frozen=True)
class SegSFTLoss:
    """The cold start's loss as a `StepLoss`: token-mean NLL over the step's policy tokens
    plus the mask loss (BCE + Dice, x `mask_weight`) over its decoded masks."""

    mask_weight: float = 1.0

    def weights(self, batch: SegBatch) -> np.ndarray:
        tokens = float(np.sum(batch.policy.loss_mask))
        return np.asarray([tokens, float(np.sum(batch.gt_valid))], np.float64)

    def objective(self, model, batch: SegBatch, denoms):
        fwd = model(batch)
        nll = aggregate(-fwd.logp, batch.policy.loss_mask, "token-mean")
        aux, _ = aux_mask_loss(
            fwd.mask_logits, batch.gt_masks, batch.gt_valid, weight=self.mask_weight
        )
        value = nll.total / denoms[0] + aux / jnp.maximum(denoms[1], 1.0)
        return value, {"nll": nll.total, "mask_loss": aux}

    def metrics(self, sums: dict[str, float], denoms: np.ndarray) -> dict[str, float]:
        return {
            "nll": sums["nll"] / float(denoms[0]),
            "mask_loss": sums["mask_loss"] / max(float(denoms[1]), 1.0),
        }

    def place(self, batch: SegBatch, mesh) -> SegBatch:
        return place_seg_batch(batch, mesh)


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
        if jax.process_count() > 1:
            raise ValueError(
                "the [SEG] route runs in one process (on any number of its local devices: "
                f"set a mesh); this job has {jax.process_count()}"
            )
        self.config = config
        self.exp = Experiment(config, workdir, progress=progress)
        self.workdir = self.exp.workdir
        self.progress = progress
        tok = self.exp.processor.tokenizer
        self.seg_id = int(tok.convert_tokens_to_ids(SEG_TOKEN))
        if tok.decode([self.seg_id]) != SEG_TOKEN:
            raise ValueError(
                f"processor tokenizer has no {SEG_TOKEN} token: add [SEG] <p> </p> <vp> </vp> "
                "to the checkpoint's tokenizer (its embedding has spare rows past the ids)"
            )
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

    def seg_batches(
        self, eps: list[SegEpisode], samples, micro: int, rollouts=None
    ) -> list[SegBatch]:
        """SegBatches of at most `micro` episodes (their examples and mask slots; `samples`:
        owner -> sample; `rollouts`: each episode's rollout mask logits, None for the cold
        start)."""
        out = []
        for i in range(0, len(eps), micro):
            part = range(i, min(i + micro, len(eps)))
            rows = [
                self._slot_data(
                    eps[j], samples[eps[j].owner], None if rollouts is None else rollouts[j]
                )
                for j in part
            ]
            pb = self._policy_batch([eps[j].example for j in part])
            out.append(make_seg_batch(pb, rows, self.shapes))
        return out

    def cold_start_episodes(self) -> tuple[list[SegEpisode], list]:
        """The oracle's o3 traces with [SEG] answers on the first `sft.num_examples` training
        samples (cycling), encoded, with their mask slots; and the samples."""
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
        return eps, samples

    def sft(self) -> dict[str, Any]:
        """The cold start (resumable; a finished one is skipped and its weights loaded)."""
        return self.exp.learner.run(SegSFTPiece(self))

    def grpo(self, loss: SegLossConfig, *, tag: str) -> dict[str, Any]:
        """GRPO from the cold start's weights (a resumed run from its own checkpoint), with
        them as the KL reference; checkpoints and metrics under <workdir>/<tag>/."""
        if self.load("sft") is None:
            raise FileNotFoundError(f"{self.workdir / 'sft' / 'ckpt'}: run the cold start first")
        reference = nnx.clone(self.exp.model)
        return self.exp.learner.run(SegGRPOPiece(self, loss, tag, reference))

    def load(self, stage: str) -> int | None:
        """Loads stage `stage`'s newest params (policy and heads); None without one."""
        return self.exp.learner.load(stage, self.policy)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, tag: str, *, limit: int | None = None) -> dict[str, Any]:
        """Greedy episodes of the evaluation protocol on the first `limit` (default
        `eval.max_expressions`) held-out expressions, scored; files in eval/<tag>/."""
        e = self.config.eval
        source = self.exp.source(self.config.data.eval_split)
        positions = list(range(min(len(source), limit or e.max_expressions)))
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

    def periodic_eval(self, name: str, step: int) -> dict[str, Any]:
        """The held-out record of stage `name` after `step` (every `eval_every` steps):
        `eval.periodic_expressions` greedy episodes into eval/<name>_<step + 1>/."""
        limit = int(self.config.eval.get("periodic_expressions", 16))
        summary = self.evaluate(f"{name}_{step + 1}", limit=limit)
        row = {k: summary["overall"].get(k) for k in ("JF", "J", "F", "R")}
        row["reward"] = summary["reward_mean"]
        return row

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
    summaries and writes <workdir>/ablation.json. Resumable: every stage resumes from its
    checkpoints (sft/, grpo_calibrated/, grpo_uncalibrated/), finished evaluations are kept
    in ablation_partial.json."""
    trainer = SegTrainer(config, workdir, progress=progress)
    workdir = Path(workdir)
    partial = workdir / "ablation_partial.json"
    results = json.loads(partial.read_text()) if partial.is_file() else {}

    def done(key, value):
        results[key] = value
        partial.write_text(json.dumps(results, indent=2, default=str))

    try:
        done("sft_train", trainer.sft())
        if "sft" not in results:
            done("sft", trainer.evaluate("sft"))
        for name, calibrate in (("calibrated", True), ("uncalibrated", False)):
            if name in results:
                continue
            done(
                f"{name}_train",
                trainer.grpo(loss_config(config, calibrate=calibrate), tag=f"grpo_{name}"),
            )
            done(name, trainer.evaluate(name))
    finally:
        trainer.close()
    (workdir / "ablation.json").write_text(json.dumps(results, indent=2, default=str))
    return results


@dataclasses.dataclass
class SegSFTPiece:
    """The [SEG] route's cold start as a learner piece (jaxseg.train.learner): the oracle's
    traces, epoch-wise shuffled (jaxseg.data.pipeline.ShuffledSteps with the run's seed),
    loss `SegSFTLoss`."""

    trainer: SegTrainer
    name: str = "sft"
    lora_block: str = "sft"
    schedule: str = "cosine"

    def __post_init__(self):
        self.config = self.trainer.config.sft
        self.module, self.lora_model = self.trainer.policy, self.trainer.exp.model

    def feed(self, steps: int) -> grain.IterDataset:
        eps, self.samples = self.trainer.cold_start_episodes()
        size, seed = int(self.config.batch_size), int(self.trainer.config.seed)
        order = ShuffledSteps(len(eps), size, seed, cycle=False)
        return step_feed(order, lambda _, idx: [eps[j] for j in idx], steps=steps)

    def step(self, data: StepData, optimizer: nnx.Optimizer) -> dict[str, float]:
        c, t = self.config, self.trainer
        batches = t.seg_batches(data.items, self.samples, c.micro_batch)
        loss = SegSFTLoss(float(c.mask_weight))
        return train_step(t.policy, optimizer, batches, loss, t.exp.mesh)

    def evaluate(self, step: int) -> dict[str, Any] | None:
        return self.trainer.periodic_eval(self.name, step)

    def postfix(self, metrics: dict[str, float]) -> dict[str, str]:
        return {"nll": f"{metrics['nll']:.3f}"}


@dataclasses.dataclass
class SegGRPOPiece:
    """One GRPO variant of the [SEG] route as a learner piece: prompts in the text route's
    order (ShuffledSteps of the training split with the run's seed), one step = rollouts,
    teacher-forced mask decoding, o3 rewards, group advantages, one `SegStepLoss` update."""

    trainer: SegTrainer
    loss: SegLossConfig
    name: str
    reference: nnx.Module
    lora_block: str = "grpo"
    schedule: str = "constant"

    def __post_init__(self):
        c = self.config = self.trainer.config.grpo
        self.module, self.lora_model = self.trainer.policy, self.trainer.exp.model
        self.advantage = advantage_of(c)  # grpo.advantage_eps: VideoSEG-O3's 1e-4
        self.sampling = SamplingParams(temperature=c.temperature, top_k=c.top_k, top_p=c.top_p)
        self.source = self.trainer.exp.source(self.trainer.config.data.train_split)

    def feed(self, steps: int) -> grain.IterDataset:
        order = ShuffledSteps(
            len(self.source), self.config.prompts_per_step, int(self.trainer.config.seed)
        )
        return step_feed(order, lambda _, idx: [self.source[i] for i in idx], steps=steps)

    def step(self, data: StepData, optimizer: nnx.Optimizer) -> dict[str, float]:
        c, t, samples = self.config, self.trainer, data.items
        t0 = time.perf_counter()
        sampler = t.exp.policy(
            sampling=self.sampling,
            max_new_tokens=c.max_new_tokens,
            seed=int(t.config.seed) * 100_003 + data.step,
        )
        eps = t.play(sampler, samples, group_size=c.group_size, seed=data.step)
        improc = t.exp.processor.image_processor
        for e in eps:
            rec = RecordedEpisode(_Key(e.episode.sample.key), e.conversation, e.turn_info)
            t._with_slots(e, rollout_example(rec, improc, advantage=0.0))
        rollouts = t.decode_rollouts(eps, samples, c.micro_batch)
        traces = score_episodes(
            t.protocol, [e.episode for e in eps], [e.owner for e in eps], samples, t.exp.backend
        )
        t_rollout = time.perf_counter() - t0
        rewards = jnp.asarray([x.total for x in traces], jnp.float32)
        for e, a in zip(eps, np.asarray(self.advantage(rewards, c.group_size))):
            e.example["advantage"] = float(a)
        batches = t.seg_batches(eps, samples, c.micro_batch, rollouts)
        if self.loss.grpo.kl_coef > 0:
            batches = [
                b.replace(policy=reference_logprobs(self.reference, b.policy, t.exp.mesh))
                for b in batches
            ]
        t1 = time.perf_counter()
        m = train_step(t.policy, optimizer, batches, SegStepLoss(self.loss), t.exp.mesh)
        m["reward/mean"] = float(rewards.mean())
        m["reward/std"] = float(rewards.std())
        m["J"] = float(np.mean([x.metrics["J"] for x in traces]))
        m["turns"] = float(np.mean([x.metrics["turns"] for x in traces]))
        m["seg_per_episode"] = float(sum(float(b.gt_valid.sum()) for b in batches)) / len(eps)
        m["parse_ok"] = float(
            np.mean([r.parse_status.startswith("ok") for x in traces for r in x.turns])
        )
        m["time/rollout"] = t_rollout
        m["time/update"] = time.perf_counter() - t1
        return m

    def evaluate(self, step: int) -> dict[str, Any] | None:
        return self.trainer.periodic_eval(self.name, step)

    def postfix(self, metrics: dict[str, float]) -> dict[str, str]:
        return {"reward": f"{metrics['reward/mean']:.2f}", "J": f"{metrics['J']:.2f}"}
