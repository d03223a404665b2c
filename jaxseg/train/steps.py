"""Jitted training steps shared by SFT and GRPO, with exact micro-batch accumulation.

A step takes a list of micro-batches (`PolicyBatch`, possibly of different padded shapes).
The loss denominator of the *whole* step is computed on host from the masks first (it never
depends on parameters), each micro-batch contributes ``grad(weighted_sum_total) / denom``,
and the sum is applied once: the update equals the full-batch update (tunix's
`WeightedMetric`, jax_anchors.md §1.1), whatever the micro-batch split.

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


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    learning_rate: float = 1e-4
    warmup_steps: int = 0
    total_steps: int = 1000
    schedule: str = "cosine"  # cosine | constant
    weight_decay: float = 0.0
    b1: float = 0.9
    b2: float = 0.999
    clip_norm: float | None = 1.0


def make_optimizer(cfg: OptimizerConfig) -> optax.GradientTransformation:
    """AdamW with linear warmup then cosine decay (or constant), global-norm clipping first."""
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
    else:
        raise ValueError(f"unknown schedule {cfg.schedule!r}; use 'cosine' or 'constant'")
    chain = [optax.clip_by_global_norm(cfg.clip_norm)] if cfg.clip_norm else []
    chain.append(optax.adamw(lr, b1=cfg.b1, b2=cfg.b2, weight_decay=cfg.weight_decay))
    return optax.chain(*chain)


def forward_logits(model, batch: PolicyBatch) -> jax.Array:
    """Teacher-forced logits `[B, L, V]` of the whole conversation."""
    logits, _ = model.forward(
        batch.input_ids,
        batch.attention_mask,
        batch.position_ids,
        pixel_values=batch.pixel_values,
        image_layout=batch.image_layout,
    )
    return logits


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


@nnx.jit(static_argnames=("loss", "mesh", "wrt"))
def _micro_grads(
    model, batch: PolicyBatch, denom: jax.Array, loss: LossConfig, mesh=None, wrt=nnx.Param
):
    def objective(m):
        total, aux = loss_terms(m, batch, loss)
        return total.total / denom, aux

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
    model, micro_batches: Sequence[PolicyBatch], loss: LossConfig, mesh=None, wrt=nnx.Param
):
    """(loss value, summed grads, host metrics) of the full batch over its micro-batches;
    `wrt`: the variables differentiated (the optimizer's `wrt`)."""
    if not micro_batches:
        raise ValueError("a step needs at least one micro-batch")
    denom = sum(loss_weight(b, loss) for b in micro_batches)
    if denom <= 0:
        raise ValueError("no policy tokens in this step's batch (all loss masks are zero)")
    total, grads, sums = 0.0, None, {}
    for mb in micro_batches:
        value, g, aux = _micro_grads(
            model, place_batch(mb, mesh), jnp.float32(denom), loss, mesh, wrt
        )
        total += float(value)
        grads = g if grads is None else _add(grads, g)
        for k, v in aux.items():
            sums[k] = sums.get(k, 0.0) + float(v)
    tokens = sums["tokens"]
    metrics = {"loss": total, "denominator": denom}
    for k, v in sums.items():
        if k in ("tokens", "nll_sum", "policy_sum", "kl_sum"):
            continue
        metrics[k] = v / max(tokens, 1.0)
    metrics["tokens"] = tokens
    return total, grads, metrics


@jax.jit
def _grad_norm(grads):
    return optax.tree.norm(grads)


def train_step(
    model,
    optimizer: nnx.Optimizer,
    micro_batches: Sequence[PolicyBatch],
    loss: LossConfig,
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
