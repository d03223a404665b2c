"""The text route's stages as pieces of the learner (jaxseg.train.learner): supervised
training (grounding/base pretraining, cold-start SFT) and GRPO.

Each piece holds what its stage reads (a grain `step_feed`) and what one step does; the
learner runs the loop around it (optimizer, LoRA, mesh placement, resume, metrics,
checkpoints, periodic evaluation). The [SEG] route's pieces are in jaxseg.seg.train.

GRPO step (Veason-R1 / VideoSEG-O3 recipe): P prompts x G sampled episodes with the
sampler-backed policy -> trajectory rewards (jaxseg.rewards via the protocol) -> group
advantages (jaxseg.rl.advantages) -> teacher-forced loss on the sampled tokens with the
sampler's log-probs as the old policy and the frozen SFT policy as the KL reference -> one
optimizer update over all micro-batches (exact accumulation, jaxseg.train.steps).

Multi-host (jaxseg.parallel.hosts): each process reads only its contiguous share of a step's
records (its grain shard: `StepData.offset` onwards), rolls out and scores its own prompts
on its own devices with its own mask backend, then the hosts exchange the examples, so every
host builds the micro-batches one process would.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import grain
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxseg.data.pipeline import ShuffledSteps, StepData, StreamSteps, step_feed
from jaxseg.parallel.hosts import allgather_objects
from jaxseg.rl.objective import GRPOLossConfig
from jaxseg.sampling.filters import SamplingParams

from .rollouts import RecordedEpisode, reward_summary, rollout_example, run_recorded
from .steps import SFTLoss, reference_logprobs, train_step


def gathered(items: list) -> list:
    """Every host's share of a step, in process order (this host's own with one process)."""
    return [x for share in allgather_objects(items) for x in share]


def _summary_only(episode: RecordedEpisode) -> RecordedEpisode:
    """What the step's metrics read of an episode (its trace, turn truncation), small enough
    to send to the other hosts."""
    turns = [{"truncated": t.get("truncated", False)} for t in episode.turn_info]
    return RecordedEpisode(episode.trace, [], turns)


@dataclasses.dataclass
class SupervisedPiece:
    """Token-mean cross-entropy on encoded examples. `examples()` (called only when steps are
    left) gives either a list (epoch-wise shuffled, jaxseg.data.pipeline.ShuffledSteps with
    the run's seed) or `(step, indices) -> that step's examples` for a stream that is a
    function of the step (the base curriculum), read `batch_size` items a step. `loss`:
    another `StepLoss` whose `collate(batch, examples)` adds what it reads to each
    micro-batch (the base's objectness, jaxseg.train.objectness)."""

    exp: Any
    name: str
    config: Any
    examples: Callable[[], list[dict] | Callable[[int, list[int]], list[dict]]]
    loss: Any = None

    @property
    def module(self) -> nnx.Module:
        return self.exp.model

    lora_model = module

    @property
    def lora_block(self) -> str:
        return self.name

    @property
    def schedule(self) -> str:
        return self.config.get("schedule", "cosine")

    def feed(self, steps: int) -> grain.IterDataset:
        examples, size = self.examples(), int(self.config.batch_size)
        what = f"{self.name}.batch_size"
        if callable(examples):
            return step_feed(StreamSteps(size), examples, steps=steps, what=what)
        order = ShuffledSteps(len(examples), size, int(self.exp.config.seed), cycle=False)
        load = lambda _, idx: [examples[j] for j in idx]  # noqa: E731
        return step_feed(order, load, steps=steps, what=what)

    def step(self, data: StepData, optimizer: nnx.Optimizer) -> dict[str, float]:
        t0 = time.perf_counter()
        examples, size = gathered(data.items), int(self.config.micro_batch)
        loss = self.loss or SFTLoss()
        micro = self.exp.batches(examples, size, collate=getattr(loss, "collate", None))
        metrics = train_step(self.exp.model, optimizer, micro, loss, self.exp.mesh)
        metrics["step_time"] = time.perf_counter() - t0
        return metrics

    def evaluate(self, step: int) -> dict[str, Any] | None:
        return self.exp.periodic_eval(self.name, step)

    def postfix(self, metrics: dict[str, float]) -> dict[str, str]:
        out = {"loss": f"{metrics['loss']:.3f}"}
        if "objectness_hit" in metrics:
            out["obj_hit"] = f"{metrics['objectness_hit']:.2f}"
        if metrics.get("attend_mass"):  # attention on the named object (jaxseg.train.objectness)
            out["att"] = f"{metrics['attend_mass']:.2f}"
        if "copy_mass" in metrics:  # attention on the prompt token an answer copies
            out["copy"] = f"{metrics['copy_mass']:.2f}"
        return out


@dataclasses.dataclass
class GRPOPiece:
    """One GRPO run (a `jaxseg.train.stages.GrpoStage`) of the text route, from the model's
    current weights, with `reference` as the frozen KL reference."""

    exp: Any
    run: Any
    reference: nnx.Module

    def __post_init__(self):
        c = self.run.config
        self.name, self.config = self.run.dir, c
        self.loss = GRPOLossConfig(
            policy_loss=c.policy_loss,
            eps_low=c.eps_low,
            eps_high=c.eps_high,
            kl_estimator=c.kl_estimator,
            kl_coef=c.kl_coef,
            aggregation=c.aggregation,
        )
        self.advantage = self.run.advantage()  # grpo.advantage, grpo.advantage_eps
        self.sampling = SamplingParams(temperature=c.temperature, top_k=c.top_k, top_p=c.top_p)
        self.source = self.exp.source(self.exp.config.data.train_split)

    @property
    def module(self) -> nnx.Module:
        return self.exp.model

    lora_model = module
    lora_block = "grpo"
    schedule = "constant"

    def feed(self, steps: int) -> grain.IterDataset:
        order = self.run.order(self.source, self.config.prompts_per_step, self.exp.config.seed)
        load = lambda _, idx: [self.source[i] for i in idx]  # noqa: E731
        return step_feed(order, load, steps=steps, what="grpo.prompts_per_step")

    def step(self, data: StepData, optimizer: nnx.Optimizer) -> dict[str, float]:
        c, exp, step, lo = self.config, self.exp, data.step, data.offset
        t0 = time.perf_counter()
        policy = exp.policy(
            sampling=self.sampling,
            max_new_tokens=c.max_new_tokens,
            seed=int(exp.config.seed) * 100_003 + step,
            first_row=lo * c.group_size,
        )
        local = run_recorded(  # this host's prompts, scored by its own mask backend
            self.run.protocol,
            policy,
            data.items,
            backend=exp.backend,
            group_size=c.group_size,
            seed=step,
            first_sample=lo,
            # grpo.overlap_chunks > 1 (optional field; a config that sets it): masks and
            # rewards of each part computed while the next part samples (train.overlap)
            overlap_chunks=int(c.get("overlap_chunks", 1)),
        )
        t_rollout = time.perf_counter() - t0
        rewards = jnp.asarray([ep.trace.total for ep in local], jnp.float32)
        advantages = np.asarray(self.advantage(rewards, c.group_size))  # whole groups
        image_processor = exp.processor.image_processor
        local_examples = [
            rollout_example(ep, image_processor, advantage=float(a))
            for ep, a in zip(local, advantages)
        ]
        # every host gets every host's examples, in prompt order (hosts.py says why)
        shares = allgather_objects((local_examples, [_summary_only(ep) for ep in local]))
        examples = [x for ex, _ in shares for x in ex]
        episodes = [ep for _, eps in shares for ep in eps]
        rewards = jnp.asarray([ep.trace.total for ep in episodes], jnp.float32)
        micro = exp.batches(examples, c.micro_batch)
        if self.loss.kl_coef > 0:
            micro = [reference_logprobs(self.reference, mb, exp.mesh) for mb in micro]
        t1 = time.perf_counter()
        metrics = train_step(exp.model, optimizer, micro, self.loss, exp.mesh)
        metrics.update(reward_summary(episodes))
        metrics["reward/mean"] = float(rewards.mean())
        metrics["time/rollout"] = t_rollout
        metrics["time/update"] = time.perf_counter() - t1
        metrics["truncated"] = float(
            np.mean([t.get("truncated", False) for ep in episodes for t in ep.turn_info])
        )
        return metrics

    def evaluate(self, step: int) -> dict[str, Any] | None:
        return self.exp.periodic_eval(self.name, step)

    def postfix(self, metrics: dict[str, float]) -> dict[str, str]:
        return {"reward": f"{metrics['reward/mean']:.2f}", "J": f"{metrics['J']:.2f}"}
