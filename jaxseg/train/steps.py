"""Jitted training steps shared by SFT and GRPO, with exact micro-batch accumulation.

A step takes a list of micro-batches (`PolicyBatch`, possibly of different padded shapes, or
any batch its loss knows: a `StepLoss`, e.g. the [SEG] route's, jaxseg.seg.train).
The loss denominator of the *whole* step is computed on host from the masks first (it never
depends on parameters), each micro-batch contributes ``grad(weighted_sum_total) / denom``,
and the sum is applied once: the update equals the full-batch update (tunix's
`WeightedMetric` in `tunix/sft/metrics`), whatever the micro-batch split.

On a mesh (`mesh=`, jaxseg.parallel): each micro-batch is placed with its rows over
data x fsdp, the gradients are pinned to their parameters' shardings and the update pins
params and optimizer state to the rule shardings (rules.constrain_state), so every step sees
the same layouts (no drift, no recompiles) and checkpoints restore onto any mesh. Model and
optimizer are expected on the mesh already (jaxseg.parallel.placement.place).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Protocol

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxseg.parallel.placement import place_batch
from jaxseg.parallel.rules import constrain_state, state_shardings
from jaxseg.rl import aggregation
from jaxseg.rl.diagnostics import policy_diagnostics
from jaxseg.rl.logprobs import next_token_logprobs, token_entropy
from jaxseg.rl.objective import GRPOLossConfig, grpo_loss

from .batch import PolicyBatch


@dataclasses.dataclass(frozen=True)
class SFTLoss:
    """Token-mean cross-entropy on the policy's tokens."""

    aggregation: str = "token-mean"


LossConfig = SFTLoss | GRPOLossConfig


class StepLoss(Protocol):
    """What `train_step` needs of a loss (hashable: it is a static argument of the jitted
    micro-step). `weights`: a micro-batch's parameter-free contribution to the step's
    denominators `[K]` (summed over micro-batches on host; the first is the policy tokens');
    `objective`: (scalar, {name: sum}) of one micro-batch given the whole step's
    denominators; `metrics`: the step's host metrics from the summed aux values; `place`:
    the micro-batch on the mesh."""

    def weights(self, batch) -> np.ndarray: ...

    def objective(self, model, batch, denoms: jax.Array) -> tuple[jax.Array, dict]: ...

    def metrics(self, sums: dict[str, float], denoms: np.ndarray) -> dict[str, float]: ...

    def place(self, batch, mesh): ...


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    learning_rate: float = 1e-4
    warmup_steps: int = 0
    total_steps: int = 1000
    schedule: str = "cosine"  # cosine | constant | rsqrt
    decay_timescale: int = 0  # rsqrt: the step the decay starts at (0: warmup_steps)
    weight_decay: float = 0.0
    b1: float = 0.9
    b2: float = 0.999
    clip_norm: float | None = 1.0


def make_optimizer(cfg: OptimizerConfig) -> optax.GradientTransformation:
    """AdamW on `learning_rate_schedule(cfg)`, global-norm clipping first."""
    chain = [optax.clip_by_global_norm(cfg.clip_norm)] if cfg.clip_norm else []
    lr = learning_rate_schedule(cfg)
    chain.append(optax.adamw(lr, b1=cfg.b1, b2=cfg.b2, weight_decay=cfg.weight_decay))
    return optax.chain(*chain)


def learning_rate_schedule(cfg: OptimizerConfig) -> optax.ScalarOrSchedule:
    """Linear warmup then cosine decay to 0 at `total_steps`, constant, or rsqrt decay.

    rsqrt (open-ended runs: nothing depends on the total length; big_vision's "rsqrt",
    Transformer §5.3): lr(s) = lr * min(1, s / warmup) * sqrt(tau / max(s, tau)), tau =
    `decay_timescale` (constant until tau, then halved at 4 tau, quartered at 16 tau)."""
    if cfg.schedule == "cosine":
        lr = optax.warmup_cosine_decay_schedule(
            0.0 if cfg.warmup_steps else cfg.learning_rate,
            cfg.learning_rate,
            max(cfg.warmup_steps, 0),
            max(cfg.total_steps, cfg.warmup_steps + 1),
        )
    elif cfg.schedule == "constant":
        lr = (
            optax.linear_schedule(0.0, cfg.learning_rate, cfg.warmup_steps)
            if cfg.warmup_steps
            else cfg.learning_rate
        )
    elif cfg.schedule == "rsqrt":
        tau = float(max(cfg.decay_timescale or cfg.warmup_steps, 1))
        warmup = float(max(cfg.warmup_steps, 0))
        peak = cfg.learning_rate

        def lr(step):
            s = jnp.asarray(step, jnp.float32)
            ramp = jnp.minimum(1.0, s / warmup) if warmup else 1.0
            return peak * ramp * jnp.sqrt(tau / jnp.maximum(s, tau))

    else:
        raise ValueError(f"unknown schedule {cfg.schedule!r}; use 'cosine', 'constant' or 'rsqrt'")
    return lr


def forward_logits(model, batch: PolicyBatch, *, return_hidden: bool = False) -> jax.Array:
    """Teacher-forced logits `[B, L, V]` of the whole conversation (or, with `return_hidden`,
    the final-normed hidden states `[B, L, D]` they come from: `model.compute_logits`)."""
    out, _ = model.forward(
        batch.input_ids,
        batch.attention_mask,
        batch.position_ids,
        pixel_values=batch.pixel_values,
        image_layout=batch.image_layout,
        return_hidden=return_hidden,
    )
    return out


def sequence_logprobs(model, batch: PolicyBatch) -> jax.Array:
    """log p(token t+1 | prefix) `[B, L-1]` under the model at temperature 1.

    The same distribution the sampler reports (jaxseg.sampling), so GRPO ratios compare like
    with like."""
    return next_token_logprobs(forward_logits(model, batch), batch.input_ids)


def loss_terms(model, batch: PolicyBatch, loss: LossConfig):
    """(objective WeightedSum, aux dict) for one micro-batch."""
    logits = forward_logits(model, batch)
    logp = next_token_logprobs(logits, batch.input_ids)
    mask = batch.loss_mask
    if isinstance(loss, SFTLoss):
        nll = aggregation.aggregate(-logp, mask, loss.aggregation)
        return nll, {"nll_sum": nll.total, "tokens": mask.sum()}
    terms = grpo_loss(
        logp,
        batch.advantages,
        mask,
        loss,
        old_logp=batch.old_logp if loss.policy_loss != "on_policy" else None,
        ref_logp=batch.ref_logp if loss.kl_coef > 0 else None,
    )
    entropy = token_entropy(logits[:, :-1])
    diag = policy_diagnostics(
        logp,
        batch.old_logp,
        batch.advantages,
        mask,
        eps_low=loss.eps_low,
        eps_high=loss.eps_high,
        ref_logp=batch.ref_logp if loss.kl_coef > 0 else None,
        entropy=entropy,
        sampler_logp=batch.old_logp,
    )
    tokens = mask.sum()
    diag.pop("num_tokens")
    diag = {k: v * tokens for k, v in diag.items()}  # token-weighted, averaged on host
    return terms.total, {
        "policy_sum": terms.policy.total,
        "kl_sum": terms.kl.total,
        "tokens": tokens,
        **diag,
    }


def loss_weight(batch: PolicyBatch, loss: LossConfig) -> float:
    """The micro-batch's denominator (parameter-free, computed on host)."""
    norm = getattr(loss, "norm_length", None)
    zeros = np.zeros_like(batch.loss_mask)
    return float(
        aggregation.aggregate(zeros, batch.loss_mask, loss.aggregation, norm_length=norm).weight
    )


@dataclasses.dataclass(frozen=True)
class TextLoss:
    """A `StepLoss` of PolicyBatches: SFT or GRPO (`config`), one denominator (the
    aggregation's weight); metrics are token-weighted means of the aux values."""

    config: LossConfig

    def weights(self, batch: PolicyBatch) -> np.ndarray:
        return np.asarray([loss_weight(batch, self.config)], np.float64)

    def objective(self, model, batch: PolicyBatch, denoms: jax.Array):
        total, aux = loss_terms(model, batch, self.config)
        return total.total / denoms[0], aux

    def metrics(self, sums: dict[str, float], denoms: np.ndarray) -> dict[str, float]:
        tokens = sums["tokens"]
        out = {"denominator": float(denoms[0])}
        for k, v in sums.items():
            if k not in ("tokens", "nll_sum", "policy_sum", "kl_sum"):
                out[k] = v / max(tokens, 1.0)
        out["tokens"] = tokens
        return out

    def place(self, batch: PolicyBatch, mesh) -> PolicyBatch:
        return place_batch(batch, mesh)


def as_step_loss(loss: LossConfig | StepLoss) -> StepLoss:
    """SFTLoss / GRPOLossConfig -> their `TextLoss`; a `StepLoss` as it is."""
    return TextLoss(loss) if isinstance(loss, SFTLoss | GRPOLossConfig) else loss


@nnx.jit
def _sequence_logprobs(model, batch: PolicyBatch) -> jax.Array:
    return sequence_logprobs(model, batch)


def reference_logprobs(reference, batch: PolicyBatch, mesh=None) -> PolicyBatch:
    """`batch` with `ref_logp` [B, L-1]: the frozen KL reference's log-probs of its tokens."""
    logp = _sequence_logprobs(reference, place_batch(batch, mesh))
    return batch.replace(ref_logp=np.asarray(logp))


@nnx.jit(static_argnames=("loss", "mesh", "wrt"))
def _micro_grads(model, batch, denoms: jax.Array, loss: StepLoss, mesh=None, wrt=nnx.Param):
    def objective(m):
        return loss.objective(m, batch, denoms)

    # only the trained variables (e.g. LoRA adapters) get gradients: no full-size grad tree
    grad_fn = nnx.value_and_grad(objective, argnums=nnx.DiffState(0, wrt), has_aux=True)
    (value, aux), grads = grad_fn(model)
    if mesh is not None:  # gradients shard like their parameters
        grads = jax.lax.with_sharding_constraint(grads, state_shardings(grads, mesh))
    return value, grads, aux


@nnx.jit(static_argnames=("mesh",))
def _apply(optimizer: nnx.Optimizer, model, grads, mesh=None):
    optimizer.update(model, grads)
    if mesh is not None:  # XLA would otherwise pick the output layouts freely
        constrain_state(model, mesh, nnx.Param)
        constrain_state(optimizer, mesh)
    return optax.tree.norm(grads)


@jax.jit
def _add(a, b):
    return jax.tree.map(jnp.add, a, b)


def accumulate_grads(
    model, micro_batches: Sequence, loss: LossConfig | StepLoss, mesh=None, wrt=nnx.Param
):
    """(loss value, summed grads, host metrics) of the full batch over its micro-batches;
    `wrt`: the variables differentiated (the optimizer's `wrt`)."""
    if not micro_batches:
        raise ValueError("a step needs at least one micro-batch")
    loss = as_step_loss(loss)
    denoms = np.sum([loss.weights(b) for b in micro_batches], axis=0)
    if denoms[0] <= 0:
        raise ValueError("no policy tokens in this step's batch (all loss masks are zero)")
    total, grads, sums = 0.0, None, {}
    for mb in micro_batches:
        value, g, aux = _micro_grads(
            model, loss.place(mb, mesh), jnp.asarray(denoms, jnp.float32), loss, mesh, wrt
        )
        total += float(value)
        grads = g if grads is None else _add(grads, g)
        for k, v in aux.items():
            sums[k] = sums.get(k, 0.0) + float(v)
    return total, grads, {"loss": total, **loss.metrics(sums, denoms)}


@nnx.jit(static_argnames=("loss",))
def _micro_metrics(model, batch, denoms: jax.Array, loss: StepLoss):
    return loss.objective(model, batch, denoms)[1]


def evaluate_loss(model, micro_batches: Sequence, loss: StepLoss) -> dict[str, float]:
    """A `StepLoss`'s metrics over `micro_batches` with no gradient and no update (e.g. held
    out): the objective's sums over the micro-batches, then `loss.metrics`."""
    denoms = np.sum([loss.weights(b) for b in micro_batches], axis=0)
    sums: dict[str, float] = {}
    for mb in micro_batches:
        aux = _micro_metrics(model, mb, jnp.asarray(denoms, jnp.float32), loss)
        for k, v in aux.items():
            sums[k] = sums.get(k, 0.0) + float(v)
    return loss.metrics(sums, denoms)


@jax.jit
def _grad_norm(grads):
    return optax.tree.norm(grads)


def train_step(
    model,
    optimizer: nnx.Optimizer,
    micro_batches: Sequence,
    loss: LossConfig | StepLoss,
    mesh=None,
    *,
    skip_nonfinite: bool = True,
):
    """One optimizer update over all micro-batches; returns host metrics. `mesh`: the mesh
    model and optimizer live on (see the module docstring).

    A step whose loss or gradient norm is not finite (NaN/inf) changes nothing: model and
    optimizer state stay as they were and ``metrics["skipped"]`` is 1.0 (the caller counts
    and decides when to abort, jaxseg.train.faults). ``skip_nonfinite=False`` applies it.
    """
    _, grads, metrics = accumulate_grads(model, micro_batches, loss, mesh, optimizer.wrt)
    norm = float(_grad_norm(grads))
    metrics["grad_norm"] = norm
    finite = math.isfinite(float(metrics["loss"])) and math.isfinite(norm)
    skip = skip_nonfinite and not finite
    if not skip:
        _apply(optimizer, model, grads, mesh)
    metrics["skipped"] = float(skip)
    return metrics
