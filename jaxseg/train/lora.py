"""LoRA adapters on the policy's Linear layers: train a low-rank update, fold it in for export.

A targeted ``Linear`` (kernel ``W [in, out]``) becomes a :class:`LoRALinear` computing
``y = x W + b + (alpha / r) * x A B`` with ``A [in, r]`` (He-uniform) and ``B [r, out]``
(zeros), so the adapted model starts exactly equal to the base (Hu et al. 2021, the LoRA the
seeds' cold starts use: Veason-R1 and RCoT-Seg r=8 via LLaMA-Factory, VideoSEG-O3 r=128,
alpha=256; arXiv 2606.06819 (training), Veason-R1 arXiv 2508.11538 (training), RCoT-Seg arXiv 2605.07334 (training)). ``A``/``B`` are flax's
``nnx.LoRA`` with ``nnx.LoRAParam`` variables, so ``nnx.Optimizer(model, tx,
wrt=nnx.LoRAParam)`` (:func:`trainable`) trains only them and the base stays frozen.

The adapted layer keeps the base's ``kernel``/``bias`` at the same paths, so the parameter
tree of a LoRA model is the base tree plus ``.../lora/lora_a`` and ``.../lora/lora_b``;
:func:`merged_params` gives the base tree with ``W + (alpha / r) A B`` (what a checkpoint, an
HF export or a later stage loads) and :func:`merge_lora` turns the model back into a plain
one holding those weights.

No LoRA dropout: the train step is deterministic (no RNG stream), so dropout is 0.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
from collections.abc import Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxseg.models.layers import Linear

from .objectness import AuxParam  # a stage's auxiliary heads are not the model's

# The decoder's projections (PEFT's "all-linear" on the language model, lm_head excluded).
TEXT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# The vision tower's blocks (qkv, proj, gate/up/down); add "visual.merger.*" for the merger.
VISION_TARGETS = ("visual.blocks.*",)


@dataclasses.dataclass(frozen=True)
class LoRAConfig:
    """rank r and alpha (update scale alpha / r); targets: a name without a dot matches that
    Linear attribute inside the text decoder (``language_model``), a dotted one is an
    fnmatch glob over the module's full path (``visual.blocks.*``)."""

    rank: int
    alpha: float
    targets: tuple[str, ...] = TEXT_TARGETS

    def __post_init__(self) -> None:
        if int(self.rank) != self.rank or self.rank < 1:
            raise ValueError(f"lora_rank must be a positive integer, got {self.rank!r}")
        if not self.alpha > 0:
            raise ValueError(f"lora_alpha must be > 0, got {self.alpha!r}")
        if isinstance(self.targets, str) or not self.targets:
            raise ValueError(
                f"lora_targets must be a non-empty list of names, got {self.targets!r}"
            )

    @property
    def scale(self) -> float:
        return float(self.alpha) / int(self.rank)

    @classmethod
    def from_stage(cls, block: Mapping[str, Any], stage: str) -> LoRAConfig | None:
        """From a stage's config block (``sft`` / ``grpo``): ``lora_rank`` (0 or absent = full
        fine-tuning -> None), ``lora_alpha`` (default 2 * rank), ``lora_targets``."""
        rank = int(block.get("lora_rank", 0) or 0)
        if rank == 0:
            return None
        alpha = block.get("lora_alpha", None)
        targets = block.get("lora_targets", None) or TEXT_TARGETS
        try:
            return cls(rank, 2.0 * rank if alpha is None else float(alpha), tuple(targets))
        except ValueError as err:
            raise ValueError(f"{stage}: {err}") from err


class LoRALinear(Linear):
    """A Linear plus a scaled low-rank update; shares the base's kernel/bias variables."""

    def __init__(self, base: Linear, *, rank: int, scale: float, rngs: nnx.Rngs):
        d_in, d_out = base.kernel.shape
        axes = base.kernel.get_metadata().get("out_sharding") or (None, None)
        self.kernel = base.kernel
        self.bias = base.bias
        self.dtype = base.dtype
        self.scale = scale
        self.lora = nnx.LoRA(
            d_in,
            rank,
            d_out,
            dtype=base.dtype,
            param_dtype=base.kernel.dtype,
            rngs=rngs,
            a_metadata=dict(out_sharding=(axes[0], None), eager_sharding=False),
            b_metadata=dict(out_sharding=(None, axes[1]), eager_sharding=False),
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        delta = self.lora(x.astype(self.dtype))
        return super().__call__(x) + delta * jnp.asarray(self.scale, delta.dtype)

    def merged_kernel(self) -> jax.Array:
        """``W + scale * A B`` in the kernel's dtype (the product in float32)."""
        kernel = self.kernel[...]
        a = self.lora.lora_a[...].astype(jnp.float32)
        b = self.lora.lora_b[...].astype(jnp.float32)
        update = jnp.matmul(a, b, precision=jax.lax.Precision.HIGHEST) * self.scale
        return (kernel.astype(jnp.float32) + update).astype(kernel.dtype)


Path = tuple[str | int, ...]


def _dotted(path: Path) -> str:
    return ".".join(str(k) for k in path)


def _matches(path: Path, target: str) -> bool:
    if "." in target:
        return fnmatch.fnmatchcase(_dotted(path), target)
    return bool(path) and path[0] == "language_model" and path[-1] == target


def _get(node: Any, key: str | int) -> Any:
    return node[key] if isinstance(key, int) else getattr(node, key)


def _set(node: Any, key: str | int, value: Any) -> None:
    if isinstance(key, int):
        node[key] = value
    else:
        setattr(node, key, value)


def _parent(model: nnx.Module, path: Path) -> Any:
    node = model
    for key in path[:-1]:
        node = _get(node, key)
    return node


def _lora_modules(model: nnx.Module) -> list[tuple[Path, LoRALinear]]:
    return [(p, m) for p, m in nnx.iter_modules(model) if isinstance(m, LoRALinear)]


def has_lora(model: nnx.Module) -> bool:
    return bool(_lora_modules(model))


def apply_lora(model: nnx.Module, config: LoRAConfig, *, rngs: nnx.Rngs) -> list[str]:
    """Replaces every Linear matched by ``config.targets`` by a LoRALinear, in place; returns
    the adapted module paths. A target that matches nothing is an error naming it."""
    if has_lora(model):
        raise ValueError("model already carries LoRA adapters: merge_lora(model) first")
    linears = [(p, m) for p, m in nnx.iter_modules(model) if isinstance(m, Linear)]
    chosen: dict[Path, Linear] = {}
    for target in config.targets:
        hits = [(p, m) for p, m in linears if _matches(p, target)]
        if not hits:
            names = sorted({str(p[-1]) for p, _ in linears})
            raise ValueError(
                f"lora_targets: {target!r} matches no Linear layer (names: {names}; a dotted "
                "target is a glob over paths such as 'visual.blocks.*')"
            )
        chosen.update(hits)
    for path, linear in sorted(chosen.items(), key=lambda kv: _dotted(kv[0])):
        adapted = LoRALinear(linear, rank=config.rank, scale=config.scale, rngs=rngs)
        _set(_parent(model, path), path[-1], adapted)
    return sorted(_dotted(p) for p in chosen)


def trainable(model: nnx.Module) -> type[nnx.Variable]:
    """The Variable type an optimizer should train: the adapters of a LoRA model, else every
    Param (full fine-tuning)."""
    return nnx.LoRAParam if has_lora(model) else nnx.Param


def adapter_params(model: nnx.Module) -> dict:
    """Pure dict of the adapters (``.../lora/lora_a``, ``lora_b``): what resuming needs."""
    return nnx.to_pure_dict(nnx.state(model, nnx.LoRAParam))


def merged_params(model: nnx.Module) -> dict:
    """Pure dict of the base parameter tree with every adapter folded into its kernel; the
    model is not changed. Equals ``nnx.to_pure_dict(nnx.state(model, nnx.Param))`` for a model
    without adapters."""
    policy = nnx.All(nnx.Param, nnx.Not(nnx.LoRAParam), nnx.Not(AuxParam))
    base = nnx.to_pure_dict(nnx.state(model, policy))
    for path, module in _lora_modules(model):
        node = base
        for key in path:
            node = node[key]
        node["kernel"] = module.merged_kernel()
    return base


def _plain_linear(adapted: LoRALinear, kernel: jax.Array) -> Linear:
    """A Linear over `kernel` with the adapted layer's bias/dtype/axes, built abstractly (no
    initialiser runs) and then given the real variables."""
    d_in, d_out = kernel.shape
    axes = adapted.kernel.get_metadata().get("out_sharding") or (None, None)
    plain = nnx.eval_shape(
        lambda: Linear(
            d_in,
            d_out,
            use_bias=adapted.bias is not None,
            axes=axes,
            dtype=adapted.dtype,
            param_dtype=kernel.dtype,
            rngs=nnx.Rngs(0),
        )
    )
    adapted.kernel.set_value(kernel)
    plain.kernel = adapted.kernel
    plain.bias = adapted.bias
    return plain


def merge_lora(model: nnx.Module) -> list[str]:
    """Folds every adapter into its base kernel and restores plain Linear layers, in place;
    returns the merged module paths (empty for a model without adapters)."""
    done = []
    for path, module in _lora_modules(model):
        _set(_parent(model, path), path[-1], _plain_linear(module, module.merged_kernel()))
        done.append(_dotted(path))
    return sorted(done)


@contextlib.contextmanager
def adapted(model: nnx.Module, config: LoRAConfig | None, *, rngs: nnx.Rngs) -> Iterator[list]:
    """A training stage's scope: adapters applied on entry (``config`` None: full
    fine-tuning, nothing happens), merged into the base kernels on exit, so after the stage
    the model is plain and holds the stage's result as a full fine-tune would."""
    if config is None:
        yield []
        return
    paths = apply_lora(model, config, rngs=rngs)
    try:
        yield paths
    finally:
        merge_lora(model)


def load_adapters(model: nnx.Module, adapters: Mapping) -> None:
    """Writes a pure dict from :func:`adapter_params` into the model's adapters."""
    state = nnx.state(model, nnx.LoRAParam)
    nnx.replace_by_pure_dict(state, adapters)
    nnx.update(model, state)
