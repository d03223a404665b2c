"""The learner: one stage runner for every training stage (pretraining, SFT, GRPO, the
[SEG] route's cold start and GRPO).

A stage is a `Piece` plugged into `Learner.run` (tunix's `RLLearner` and its subclasses play
the same roles): the piece says what is trained (`module`), what each step reads (`feed`, a
grain `step_feed`), what one step does (`step`: rollouts, losses, the update) and what its
periodic evaluation is (`evaluate`); the learner owns everything around it:

- the optimizer (jaxseg.train.steps.make_optimizer) over the trainable variables: LoRA
  adapters when the stage block has ``lora_rank`` > 0 (applied to `piece.lora_model` for the
  stage and merged back after it, jaxseg.train.lora), else every Param;
- placement on the run's mesh (jaxseg.parallel.placement; a no-op without one), so a piece
  gets meshes, LoRA and remat without code of its own;
- resume: the newest intact checkpoint of ``<workdir>/<piece.name>/ckpt`` restores params (or
  adapters), optimizer state, the step and the data iterator's state; a finished stage is
  skipped;
- the loop: the non-finite guard (jaxseg.train.faults), metrics (``metrics.jsonl`` + tb,
  process 0 only), held-out evaluation every ``eval_every`` steps, and a checkpoint every
  ``checkpoint_every`` steps and at the end.

Checkpoint items (orbax, jaxseg.train.checkpoint): ``params`` (the merged params: what
`load` and export read), ``opt``, ``lora`` (a LoRA stage's trained variables), ``aux``
(heads trained with the policy but not part of it, e.g. the base's objectness head:
`jaxseg.train.objectness.AuxParam`; restored on resume, never loaded or exported) and the JSON
``meta``: ``next_step``, the non-finite counters and ``data``, the grain iterator's state
(``{"next_index": step}``), so a resumed stage reads the next step's records, none repeated
or skipped. A checkpoint without ``data`` resumes its feed at ``next_step``.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import grain
import jax
import numpy as np
from flax import nnx

from jaxseg.data.pipeline import StepData, resume_iterator
from jaxseg.parallel.placement import place

from .checkpoint import (
    CheckpointCorrupt,
    Checkpointer,
    CheckpointMismatch,
    _key,
    abstract_like,
)
from .faults import NonFiniteGuard
from .lora import LoRAConfig, adapted, has_lora, merged_params
from .objectness import AuxParam
from .progress import tqdm  # bars on a terminal, log lines on a cluster (process 0)
from .steps import OptimizerConfig, make_optimizer

# lora: a LoRA stage's trained variables; aux: heads trained with the policy but not part of
# it (jaxseg.train.objectness.AuxParam); each absent otherwise
ITEMS = ("params", "opt", "lora", "aux")
POLICY = nnx.All(nnx.Param, nnx.Not(AuxParam))  # what `params` holds (load and export read)


class Piece(Protocol):
    """What a stage plugs into `Learner.run`.

    name: the stage's folder under the workdir (and its progress label); config: its block
    (steps, learning_rate, warmup_steps, weight_decay, checkpoint_every, keep, eval_every,
    max_nonfinite, lora_rank, ...); module: what the optimizer trains; lora_model: the part
    LoRA adapts (the language model); lora_block: the block name errors cite; schedule:
    cosine | constant | rsqrt (block key `decay_timescale`)."""

    name: str
    config: Any
    module: nnx.Module
    lora_model: nnx.Module
    lora_block: str
    schedule: str

    def feed(self, steps: int) -> grain.IterDataset:
        """The stage's `step_feed` over `steps` steps (element s: step s's `StepData`)."""

    def step(self, data: StepData, optimizer: nnx.Optimizer) -> dict[str, float]:
        """One training step on this host's share `data`; its metrics."""

    def evaluate(self, step: int) -> dict[str, Any] | None:
        """The periodic held-out record after `step` (None: nothing to log)."""

    def postfix(self, metrics: dict[str, float]) -> dict[str, str]:
        """What the progress bar shows of a step's metrics."""


@dataclasses.dataclass(frozen=True)
class Outside:
    """nnx filter: the Params whose path does not start with `prefix`."""

    prefix: tuple

    def __call__(self, path, value) -> bool:
        return isinstance(value, nnx.Param) and tuple(path[: len(self.prefix)]) != self.prefix


def trainable(
    module: nnx.Module, lora_model: nnx.Module, freeze_vision: bool = False
) -> nnx.filterlib.Filter:
    """The variables a stage trains: every Param; with LoRA adapters on `lora_model`, the
    adapters and the Params of `module` outside it (e.g. the [SEG] route's decoder heads).
    `freeze_vision`: none of the vision towers' (every submodule named `visual`, with its
    mergers): their features are constants of the loss, so the backward pass skips the
    tower (VideoSEG-O3's SFT stages freeze the vision encoder)."""
    if not has_lora(lora_model):
        wrt = nnx.Param  # AuxParams too (a subclass)
    elif lora_model is module:
        wrt = nnx.Any(nnx.LoRAParam, AuxParam)
    else:
        prefix = next((p for p, m in nnx.iter_modules(module) if m is lora_model), None)
        if prefix is None:
            raise ValueError("the piece's lora_model is not part of its module")
        wrt = nnx.Any(nnx.LoRAParam, AuxParam, Outside(tuple(prefix)))
    if not freeze_vision:
        return wrt
    towers = [tuple(p) for p, _ in nnx.iter_modules(module) if p and p[-1] == "visual"]
    if not towers:
        raise ValueError("freeze_vision: the stage's module has no vision tower (`visual`)")
    return nnx.All(wrt, *(Outside(p) for p in towers))


class Learner:
    """Runs stages of one run (`run`) and loads their results (`load`).

    workdir: the run directory; mesh: the run's mesh (None: one device); seed: the LoRA
    adapters' init seed; logger: stage folder -> a metrics logger (a context manager);
    progress: show bars."""

    def __init__(
        self,
        workdir: Path,
        *,
        mesh,
        seed: int,
        logger: Callable[[Path], Any],
        progress: bool = True,
    ):
        self.workdir = workdir
        self.mesh = mesh
        self.seed = int(seed)
        self.logger = logger
        self.progress = progress

    # ------------------------------------------------------------------ state
    def state(self, module: nnx.Module, optimizer: nnx.Optimizer) -> dict[str, Any]:
        """The checkpoint items of a stage (module docstring)."""
        out = {
            "params": merged_params(module),
            "opt": nnx.to_pure_dict(nnx.state(optimizer, nnx.optimizer.OptState)),
        }
        if optimizer.wrt is not nnx.Param:
            out["lora"] = nnx.to_pure_dict(nnx.state(module, _without_aux(optimizer.wrt)))
        aux = nnx.to_pure_dict(nnx.state(module, AuxParam))
        if aux:
            out["aux"] = aux
        return out

    def restore(
        self, ckpt: Checkpointer, module: nnx.Module, optimizer: nnx.Optimizer
    ) -> tuple[int, dict]:
        """Restores the newest intact checkpoint into module + optimizer (newer damaged steps
        are skipped, named and moved to ckpt/broken/); returns (next step, its meta). A LoRA
        stage restores its trained variables onto the base rebuilt as a fresh start does."""
        if ckpt.latest_step() is None:
            return 0, {}
        trained = (
            ("params", POLICY)
            if optimizer.wrt is nnx.Param
            else ("lora", _without_aux(optimizer.wrt))
        )
        target = {
            "opt": nnx.to_pure_dict(nnx.state(optimizer, nnx.optimizer.OptState)),
            trained[0]: nnx.to_pure_dict(nnx.state(module, trained[1])),
        }
        aux = nnx.to_pure_dict(nnx.state(module, AuxParam))
        if aux:
            target["aux"] = aux
        try:
            step, restored, meta, skipped = ckpt.restore_intact(abstract_like(target))
        except CheckpointMismatch as err:
            found = _restore_across_heads(ckpt, target)
            if found is not None:
                (step, restored, meta, skipped), fresh = found
                tqdm.write(
                    "resume: the checkpoint's auxiliary heads differ from this run's: "
                    + (
                        f"{', '.join(fresh)} (switched on since it was written) starts from its "
                        "initial value; "
                        if fresh
                        else ""
                    )
                    + "heads it holds that this run does not have are left unread"
                )
            else:
                grown = _restore_grown(ckpt, target, _patch_size(module))
                if grown is None:
                    raise ValueError(
                        f"{err}: it does not match this run's trainable parameters (was "
                        "lora_rank / lora_targets, or an auxiliary head such as "
                        "pretrain.base.objectness, changed since it was written? A model may "
                        "only grow: blocks appended, MLPs widened; or its vision patches shrink "
                        "as its merge grows)"
                    ) from err
                step, restored, meta, skipped = grown
        then = "starting the stage over" if step is None else f"resuming from step {step}"
        for bad, why in skipped:
            tqdm.write(f"resume: skipped checkpoint step {bad} ({why}); {then}")
        if step is None:
            return 0, {}  # nothing but empty step folders: the stage starts over
        _update(module, trained[1], restored[trained[0]])
        if restored.get("aux"):
            _update(module, AuxParam, restored["aux"])
        _update(optimizer, nnx.optimizer.OptState, restored["opt"])
        return int(meta["next_step"]), meta

    def load(self, stage: str, module: nnx.Module, workdir=None) -> int | None:
        """Loads the params of `stage`'s newest intact checkpoint (of this run, or of the run
        in `workdir`) into `module`; returns its step (None without one). Never changes the
        checkpoint folder (the stage may be training in another process)."""
        ckpt_dir = (self.workdir if workdir is None else workdir) / stage / "ckpt"
        if not ckpt_dir.is_dir():
            return None
        with Checkpointer(ckpt_dir, item_names=ITEMS, read_only=True) as ckpt:
            target = {"params": nnx.to_pure_dict(nnx.state(module, POLICY))}
            step, restored, _, skipped = ckpt.restore_intact(abstract_like(target))
            if step is None:
                return None
            for bad, why in skipped:
                tqdm.write(f"{stage}: skipped checkpoint step {bad} ({why}); loaded step {step}")
        _update(module, POLICY, restored["params"])
        return step

    # ------------------------------------------------------------------ the loop
    def run(self, piece: Piece) -> dict[str, Any]:
        """Trains `piece` up to its `config.steps` (resuming), see the module docstring."""
        c, name = piece.config, piece.name
        stage = self.workdir / name
        opt_cfg = OptimizerConfig(
            learning_rate=c.learning_rate,
            warmup_steps=c.get("warmup_steps", 0),
            total_steps=c.steps,
            weight_decay=c.get("weight_decay", 0.0),
            schedule=piece.schedule,
            decay_timescale=int(c.get("decay_timescale", 0) or 0),
        )
        lora = LoRAConfig.from_stage(c, piece.lora_block)
        with (
            adapted(piece.lora_model, lora, rngs=nnx.Rngs(self.seed)),
            Checkpointer(stage / "ckpt", max_to_keep=c.keep, item_names=ITEMS) as ckpt,
            self.logger(stage) as log,
        ):
            module = place(piece.module, self.mesh)  # LoRA adapters were just added
            wrt = trainable(module, piece.lora_model, bool(c.get("freeze_vision", False)))
            optimizer = place(nnx.Optimizer(module, make_optimizer(opt_cfg), wrt=wrt), self.mesh)
            start, resumed = self.restore(ckpt, module, optimizer)  # onto these shardings
            if start >= c.steps:
                return {"stage": name, "skipped": True, "step": start}
            rewind = getattr(log, "rewind", None)
            if rewind is not None:
                rewind(start)  # steps >= start run again: their old records go
            guard = NonFiniteGuard(
                name, c.get("max_nonfinite", 3), skipped_before=resumed.get("nonfinite_skipped", 0)
            )
            feed = resume_iterator(piece.feed(c.steps), start, resumed.get("data"))
            every = int(c.get("eval_every", 0) or 0)
            bar = tqdm(range(start, c.steps), desc=name, disable=not self.progress)
            for step in bar:
                data = next(feed)
                if data.step != step:
                    raise RuntimeError(f"{name}: the feed gave step {data.step} at step {step}")
                t0 = time.perf_counter()
                metrics = piece.step(data, optimizer)
                metrics.setdefault("step_time", time.perf_counter() - t0)
                guard.check(step, metrics)  # a non-finite step changed nothing; too many abort
                log.log("train", step, metrics)
                bar.set_postfix(**piece.postfix(metrics))
                if every > 0 and (step + 1) % every == 0:
                    row = piece.evaluate(step)
                    if row is not None:
                        log.log("eval", step, row)
                if (step + 1) % c.checkpoint_every == 0 or step + 1 == c.steps:
                    meta = {"next_step": step + 1, "data": feed.get_state()}
                    meta.update(guard.checkpoint_meta())
                    ckpt.save(step, self.state(module, optimizer), meta, force=True)
            ckpt.wait()
        return {"stage": name, "step": c.steps}


def _patch_size(module: nnx.Module) -> int | None:
    """The vision tower's patch side of a policy (None for a module without one)."""
    vision = getattr(getattr(module, "config", None), "vision", None)
    return getattr(vision, "patch_size", None)


def _without_aux(wrt) -> nnx.filterlib.Filter:
    return nnx.All(wrt, nnx.Not(AuxParam))


def _restore_across_heads(ckpt: Checkpointer, target: dict):
    """((step, state, meta, skipped), names) for a checkpoint whose auxiliary heads differ
    from this run's: restored with the target minus the heads `names` (their params and
    optimizer moments; switched on since it was written, or reshaped: they start fresh), the
    fewest that make it match, leaving unread the heads it holds that `target` lacks. None
    if nothing matches (the difference is not in the auxiliary heads)."""
    step = ckpt.latest_step()
    try:
        saved = {p[0] for p in ckpt.saved_paths(step, "aux")} if step is not None else set()
    except CheckpointCorrupt:
        saved = set()
    heads = sorted(target.get("aux", {}))
    for n in range(len(heads) + 1):
        for names in itertools.combinations(heads, n):
            trimmed = _drop_keys(target, set(names))
            if not trimmed.get("aux"):
                trimmed.pop("aux", None)
            unread = (saved - set(trimmed.get("aux", {}))) | set(names)
            try:
                return ckpt.restore_intact(abstract_like(trimmed), unread=unread), names
            except CheckpointMismatch:
                continue
    return None


# where a model may grow without changing what it computes (function-preserving growth, as
# Net2Net / bert2BERT): blocks appended to a stack, and MLPs' hidden units added; the modules
# writing into the residual stream (or, for the patch mergers, into the language model's
# input) start at zero in what is new
_STACKS = ("blocks", "layers")
_MLP = ("linear_fc1", "linear_fc2", "gate_proj", "up_proj", "down_proj")
_WRITERS = ("proj", "o_proj", "linear_fc2", "down_proj")
_MERGERS = ("merger", "deepstack_merger_list")
_PATCH_EMBED = ("visual", "patch_embed", "kernel")
_MERGER_FC1 = ("visual", "merger", "linear_fc1", "kernel")


def _restore_grown(ckpt: Checkpointer, target: dict, patch_size: int | None = None):
    """(step, state, meta, skipped) of the newest checkpoint restored into a model that has
    grown since it was written, or None when `target` differs from it otherwise.

    Growth that keeps the function: blocks appended to a stack (``blocks``/``layers``; their
    params start at `target`'s initial values, their residual writers, attention output and
    MLP down projections, at zero, so each new block is the identity) and MLP hidden units
    added (the saved weights fill the leading rows/columns; the new units' down-projection
    rows are zero). Optimizer moments of what is new are `target`'s (zero).

    Re-patching, which keeps what a merged token covers but not the function: the vision
    tower's patches cut f times smaller per side and its merge side grown f times (`patch_size`,
    the tower's new patch side; `_repatch_rule` says how each array carries over). The tower's
    blocks, position table and the language model are kept; the re-patched arrays' optimizer
    moments start at zero.

    Anything else (a width, a vocabulary, a missing array) is not growth."""
    step = ckpt.latest_step()
    if step is None:
        return None
    try:
        saved = {name: ckpt.saved_shapes(step, name) for name in target}
    except CheckpointCorrupt:
        return None
    repatch = _repatch(saved.get("params", {}), target.get("params", {}), patch_size)
    trimmed, layout, new_blocks, widened, repatched = {}, {}, set(), 0, 0
    for name, tree in target.items():
        have = saved[name]
        leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
        paths = {tuple(_key(k) for k in p): (p, v) for p, v in leaves}
        if set(have) - set(paths):
            return None  # the checkpoint holds an array the model lacks
        kept = []
        for path, (keys, value) in paths.items():
            block = _new_block(path, have)
            if path not in have:
                if block is None:
                    return None
                if name == "params":
                    new_blocks.add(block)
                layout[name, path] = (None, keys, value, None)
                continue
            shape, rule = have[path], None
            if shape != value.shape:
                rule = None if repatch is None else _repatch_rule(path, shape, repatch)
                if rule is not None:
                    repatched += name == "params"
                else:
                    mlp = len(path) > 1 and path[-2] in _MLP and len(shape) == value.ndim
                    if not mlp or any(a > b for a, b in zip(shape, value.shape, strict=True)):
                        return None
                    widened += name == "params"
            kept.append((keys, jax.ShapeDtypeStruct(shape, value.dtype, sharding=value.sharding)))
            layout[name, path] = (shape, keys, value, rule)
        trimmed[name] = _unflatten(kept)
    if not new_blocks and not widened and not repatched:
        return None
    step, restored, meta, skipped = ckpt.restore_intact(trimmed)
    if step is None:
        return step, restored, meta, skipped
    out: dict[str, list] = {name: [] for name in target}
    for (name, path), (shape, keys, value, rule) in layout.items():
        grown = np.array(jax.device_get(value))
        old = None if shape is None else np.asarray(_get(restored[name], keys))
        if rule is not None:
            if name == "params":  # moments of a re-patched array: `target`'s (zero)
                grown = rule(old, grown)
        else:
            if _writes_out(path):
                grown[...] = 0  # what is new writes nothing into the residual stream
            if old is not None:
                grown[tuple(slice(0, n) for n in shape)] = old
        out[name].append((keys, jax.device_put(grown, value.sharding)))
    tqdm.write(
        f"resume: the model changed since step {step} was written ("
        + ", ".join(
            x
            for x in (
                f"{len(new_blocks)} blocks appended" if new_blocks else "",
                f"{widened} MLP arrays widened" if widened else "",
                f"vision patches {repatch[0]}x smaller per side, merge side {repatch[0]}x "
                f"larger ({repatched} arrays re-patched: not the same function, the tower "
                "adapts)"
                if repatched
                else "",
            )
            if x
        )
        + "): what is new starts from its initial value, its residual writers at zero, its "
        "optimizer moments at zero"
    )
    return step, {name: _unflatten(leaves) for name, leaves in out.items()}, meta, skipped


def _writes_out(path: tuple[str, ...]) -> bool:
    """An array of a module writing into the residual stream or a merger's output."""
    return len(path) > 1 and path[-2] in _WRITERS and any(s in path for s in _STACKS + _MERGERS)


def _repatch(saved: dict, params: dict, patch_size: int | None):
    """(f, old merge side, tower width, C*T) when the vision tower's patches were cut f times
    smaller per side (f >= 2) and its merge side grown f times, so a merged token covers the
    pixels it did (`patch_size` 16 -> 8 with `spatial_merge_size` 2 -> 4); None otherwise."""
    if not patch_size:
        return None
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    now = {tuple(_key(k) for k in p): v.shape for p, v in leaves}
    if _PATCH_EMBED not in saved or _PATCH_EMBED not in now:
        return None
    (old_rows, width), (new_rows, width_now) = saved[_PATCH_EMBED], now[_PATCH_EMBED]
    c_t = new_rows // (patch_size * patch_size)
    f = int(round((old_rows / new_rows) ** 0.5))
    if width != width_now or f < 2 or f * f * new_rows != old_rows or c_t < 1:
        return None
    merge = int(round((saved.get(_MERGER_FC1, (0,))[0] / width) ** 0.5))
    if merge < 1 or now.get(_MERGER_FC1, (0,))[0] != (f * merge) ** 2 * width:
        return None
    return f, merge, width, c_t


def _repatch_rule(path, old_shape, repatch):
    """How the re-patched tower's array at `path` is made from the saved one, `(old, init) ->
    new`, or None for an array re-patching does not change this way.

    The patch embedding of an f-times smaller patch is the sum of the old kernel's f x f
    sub-kernels (a patch tiled f x f times embeds as the old one did). A merger's first layer
    reads each new patch with its old patch's weights over f^2 (the f x f patches covering
    an old patch's pixels, holding its hidden state, give the old pre-activation) into the
    leading hidden units; its other units keep their initial draw and, like widened MLP
    units, write nothing (`_writes_out`). A DeepStack merger's post-shuffle norm repeats its
    old patch's scale and shift (the same mean and variance)."""
    f, merge, width, c_t = repatch
    if path[-3:] == _PATCH_EMBED:  # params, or an optimizer moment of them
        return lambda old, init: _sum_subkernels(old, c_t, f)
    if not any(m in path for m in _MERGERS) or old_shape[0] != merge * merge * width:
        return None
    if path[-2:] == ("linear_fc1", "kernel") and len(old_shape) == 2:

        def fc1(old, init):
            init[:, : old.shape[1]] = _merge_rows(old, f, merge, width) / (f * f)
            return init

        return fc1
    if path[-2] == "norm" and len(old_shape) == 1:
        return lambda old, init: _merge_rows(old, f, merge, width)
    return None


def _merge_rows(old: np.ndarray, f: int, merge: int, width: int) -> np.ndarray:
    """A merger's input-indexed array `[merge^2 * width, ...]` (patches in row-major order
    within the merge window) for merge side `f * merge`: each of the f x f patches now
    covering one old patch's pixels reads that patch's rows."""
    grid = old.reshape(merge, merge, width, *old.shape[1:])
    grid = np.repeat(np.repeat(grid, f, axis=0), f, axis=1)
    return grid.reshape((f * merge) ** 2 * width, *old.shape[1:])


def _sum_subkernels(old: np.ndarray, c_t: int, f: int) -> np.ndarray:
    """A patch embedding `[C*T*P*P, D]` (rows in (channel, time, row, column) order, as the
    processor flattens a patch) for patches of side P / f: the sum of its f x f sub-kernels."""
    side = int(round((old.shape[0] // c_t) ** 0.5))
    p = side // f
    grid = old.reshape(c_t, f, p, f, p, old.shape[1])
    return grid.sum(axis=(1, 3)).reshape(c_t * p * p, old.shape[1])


def _new_block(path: tuple[str, ...], saved) -> tuple[str, ...] | None:
    """The prefix naming the stack entry `path` lies in when the checkpoint has nothing under
    it (an appended block), else None."""
    for i, key in enumerate(path[:-1]):
        if key in _STACKS and path[i + 1].isdigit():
            prefix = path[: i + 2]
            if not any(p[: i + 2] == prefix for p in saved):
                return prefix
    return None


def _raw(k):
    """The dict key or sequence index a tree path entry stands for."""
    return getattr(k, "key", getattr(k, "idx", k))


def _get(tree, keys):
    for k in keys:
        tree = tree[_raw(k)]
    return tree


def _unflatten(leaves) -> dict:
    """A nested dict from (key path, value) pairs (the paths' dict / sequence keys)."""
    out: dict = {}
    for keys, value in leaves:
        node = out
        for k in keys[:-1]:
            node = node.setdefault(_raw(k), {})
        node[_raw(keys[-1])] = value
    return out


def _drop_keys(tree, names: set):
    """A nested dict without the entries keyed by any of `names`, at any depth."""
    if not isinstance(tree, dict):
        return tree
    return {k: _drop_keys(v, names) for k, v in tree.items() if k not in names}


def _update(node, filters, pure: dict) -> None:
    state = nnx.state(node, filters)
    nnx.replace_by_pure_dict(state, pure)
    nnx.update(node, state)
