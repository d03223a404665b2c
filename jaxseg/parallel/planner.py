"""Capacity planner: per-device memory and step time of a GRPO run on a named slice.

Everything is computed from the model as built here and the sharding rules the run uses:

* parameters, gradients, AdamW moments and the rollout KV cache are summed over the actual
  per-device shard shapes (`nnx.eval_shape` model + `state_shardings` / `named_sharding` on an
  `AbstractMesh` of the slice), so replication of indivisible dimensions is counted exactly;
* activations follow the ops of jaxseg/models/qwen2_5_vl (eager attention materialises
  `[H, S, S]` scores; see `_layer_elements`), per remat policy (`model.remat`, the names the
  model's per-block remat takes, jaxseg/models/remat.py; the trainer runs with the same field):
    none          - no rematerialisation: every intermediate of every layer is kept;
    dots_saveable - each block under `nnx.remat(policy=dots_saveable)`: matmul outputs kept,
                    elementwise ops recomputed (no extra matmul FLOPs);
    full          - each block under `nnx.remat(policy=nothing_saveable)`: only block inputs
                    kept, one extra forward pass of FLOPs;
  plus, for dots_saveable/full, one block's full set live while it is recomputed;
* step time: FLOPs (6 N per trained token + attention + vision tower; 2 N per generated
  token) at the chip's dense bf16 peak times an MFU assumption; decoding is also bounded by
  reading the weights and cache from HBM and, under FSDP, all-gathering the weights over ICI
  every token, and the estimate takes the largest of the three.

Memory is a model, not a measurement: XLA's buffer assignment, fragmentation and small
tensors (RoPE tables, masks) are not counted; treat > 90% of HBM as not fitting.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from ml_collections import ConfigDict

from jaxseg.models.family import PolicyConfig, family_of, get_family
from jaxseg.models.remat import REMAT_POLICIES

from .mesh import MeshConfig, fill_shape
from .rules import BATCH_AXES, KV_CACHE_AXES, named_sharding, shards, state_shardings
from .topology import Topology

REMAT = tuple(REMAT_POLICIES)  # none, dots_saveable, full
# train: the sampler multiplies by the training shards (FSDP: all-gathered every token);
# copy: a compute-dtype copy, sharded over tensor only, refreshed once per step.
SAMPLER_WEIGHTS = ("train", "copy")
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE_ROOT = Path(__file__).resolve().parents[1]
GB = 1e9


class PlanError(ValueError):
    """A config the planner cannot evaluate (names the field)."""


@dataclasses.dataclass(frozen=True)
class Line:
    label: str
    value: float  # bytes, FLOPs or seconds
    arithmetic: str


@dataclasses.dataclass
class Plan:
    topology: Topology
    mesh_shape: dict[str, int]
    inputs: list[Line]
    params: list[Line]
    train: list[Line]
    rollout: list[Line]
    flops: list[Line]
    time: list[Line]
    warnings: list[str]

    def total(self, section: str) -> float:
        return sum(line.value for line in getattr(self, section))

    @property
    def peak_bytes(self) -> float:
        return max(self.total("train"), self.total("rollout"))

    @property
    def fits(self) -> bool:
        return self.peak_bytes <= 0.9 * self.topology.chip.hbm_bytes


# ----------------------------------------------------------------------------- inputs
def _dtype_bytes(name: str, field: str) -> int:
    if name not in DTYPE_BYTES:
        raise PlanError(f"{field} = {name!r}; expected one of {sorted(DTYPE_BYTES)}")
    return DTYPE_BYTES[name]


def model_config(path: str) -> PolicyConfig:
    """Any family's config from an HF config.json (its `model_type` picks the family)."""
    p = Path(path)
    if not p.is_absolute() and not p.exists():
        # a checkout's root, else the package ("configs/hf/..." is package data, jaxseg/configs)
        p = next((b / p for b in (REPO_ROOT, PACKAGE_ROOT) if (b / p).exists()), REPO_ROOT / p)
    if p.is_dir():
        p = p / "config.json"
    try:
        model_type = json.loads(p.read_text()).get("model_type")
    except (OSError, json.JSONDecodeError) as e:
        raise PlanError(f"model.hf_config = {path!r}: cannot read ({e})") from None
    return get_family(model_type).config_from_json(p)


def vision_patches_per_frame(height: int, width: int, patch: int = 14) -> tuple[int, int]:
    """(patches, merged tokens) of one frame after the processor's smart_resize (a 2 x patch
    px grid, default pixel budget), each frame encoded as an image (temporal patch = the frame
    twice)."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    h, w = smart_resize(height, width, factor=2 * patch)
    patches = (h // patch) * (w // patch)
    return patches, patches // 4


def mesh_shape_for(mesh_cfg: MeshConfig, topology: Topology) -> dict[str, int]:
    """The mesh the run would build on `topology` (-1 filled as `create_mesh` does)."""
    granules = 1 if mesh_cfg.granule == "slice" else topology.hosts
    dcn = fill_shape(mesh_cfg.dcn, granules, "mesh.dcn") if -1 in mesh_cfg.dcn else mesh_cfg.dcn
    if topology.devices % math.prod(dcn):
        raise PlanError(f"mesh.dcn = {dcn} does not divide {topology.devices} devices")
    ici = fill_shape(mesh_cfg.ici, topology.devices // math.prod(dcn), "mesh.ici")
    return {a: i * d for a, i, d in zip(mesh_cfg.axes, ici, dcn, strict=True)}


# ----------------------------------------------------------------------------- arithmetic
def _layer_elements(d, dq, dkv, f, heads, s, t, tk, b, remat):
    """(kept bytes per token per layer, full-layer bytes per token) of one attention+MLP block.

    Kept for backward without remat (our layers.py/text.py): block input and residual sums
    (3 D), two norm outputs (2 D), q/k/v projections (Dq + 2 Dkv), q/k after RoPE (Dq + Dkv),
    k/v repeated to all heads (2 Dq), attention output (Dq), o_proj / down_proj outputs (D),
    gate, up, silu(gate), product (4 F), attention scores (H S, dtype) + softmax (H S, f32)
    + probabilities cast back (H S, dtype). Head/MLP dimensions divide by the tensor axis
    (`t`; `tk` for KV heads, 1 when it does not divide them)."""
    none = (6 * d + 5 * dq / t + 3 * dkv / tk + 4 * f / t) * b + heads / t * s * (2 * b + 4)
    if remat == "none":
        return none, none
    if remat == "dots_saveable":  # q/k/v, scores, attention output, o, gate, up, down + input
        kept = (3 * d + 2 * dq / t + 2 * dkv / tk + 2 * f / t) * b + heads / t * s * b
        return kept, none
    return d * b, none  # full: the block input only


class _FixedKey:
    """Stands in for `nnx.Rngs` when only shapes are wanted: the model's `param()` draws
    `rngs.params()`, and with a real Rngs each draw updates a traced counter, which jax 0.10
    makes quadratic in the parameter count under `eval_shape` (~20 s for the 3B model)."""

    def params(self):
        return jax.random.key(0)


def abstract_model(mcfg: PolicyConfig, dtype=jnp.float32) -> nnx.Module:
    """The model with float32 ShapeDtypeStruct parameters and computation `dtype`, built
    without allocating."""
    family = family_of(mcfg)
    return nnx.eval_shape(
        lambda: family.build(mcfg, dtype=dtype, param_dtype=jnp.float32, rngs=_FixedKey())
    )


@dataclasses.dataclass(frozen=True)
class ParamStats:
    total: int
    per_device: int  # sum of this device's shard sizes
    vision: int
    text_matmul: int  # decoder matrices + lm_head (the tied embedding serves as one)
    vision_matmul: int  # patch embedding + vision blocks' matrices
    merger_matmul: int


@functools.lru_cache(maxsize=16)
def param_stats(mcfg: PolicyConfig, mesh_shape: tuple[tuple[str, int], ...]) -> ParamStats:
    """Parameter counts of the model, per device on a mesh of `mesh_shape` (cached: the
    abstract 3B build takes about a second)."""
    names = tuple(a for a, _ in mesh_shape)
    amesh = jax.sharding.AbstractMesh(
        tuple(n for _, n in mesh_shape),
        names,
        axis_types=(jax.sharding.AxisType.Auto,) * len(names),
    )
    abstract = abstract_model(mcfg)
    flat = dict(nnx.to_flat_state(nnx.state(abstract, nnx.Param)))
    shardings = dict(nnx.to_flat_state(state_shardings(abstract, amesh, nnx.Param)))

    def count(keep) -> int:
        return sum(math.prod(v.shape) for p, v in flat.items() if keep(p, v))

    return ParamStats(
        total=count(lambda p, v: True),
        per_device=sum(math.prod(shardings[p].shard_shape(v.shape)) for p, v in flat.items()),
        vision=count(lambda p, v: p[0] == "visual"),
        text_matmul=count(lambda p, v: p[0] == "language_model" and "layers" in p and v.ndim == 2)
        + mcfg.text.vocab_size * mcfg.text.hidden_size,
        vision_matmul=count(lambda p, v: p[0] == "visual" and p[1] != "merger" and v.ndim == 2),
        merger_matmul=count(lambda p, v: p[:2] == ("visual", "merger") and v.ndim == 2),
    )


@dataclasses.dataclass(frozen=True)
class Workload:
    """What one GRPO step of the run does, read from the config the trainer runs with
    (`model`, `mesh`, `grpo`) and the planner's own assumptions (`plan`: the largest prompt a
    sequence carries, turns per episode, sampler weights, MFU)."""

    mcfg: PolicyConfig
    b: int  # bytes per element, computation dtype
    pb: int  # bytes per element, parameter (and optimizer moment) dtype
    remat: str
    sampler_weights: str
    mfu: float
    group: int
    prompts: int
    new_tokens: int  # generated tokens per sequence, every turn's budget
    frames: int
    frame_size: tuple[int, int]
    text_tokens: int
    micro_batch: int  # global sequences per accumulation step
    with_ref: bool  # a reference model for the KL term (grpo.kl_coef > 0)
    dtype: str


def read_workload(config: Mapping[str, Any]) -> Workload:
    """The `Workload` of `config`; a PlanError naming the field for a value it cannot price."""
    model_cfg, grpo = config["model"], config["grpo"]
    assumptions = config.get("plan", {})
    if "remat" in config.get("train", {}):  # one source: the trainer's model.remat
        raise PlanError(
            "train.remat is not a field any more: the planner reads model.remat, the setting "
            "the trainer runs with (set that one)"
        )
    remat = model_cfg.get("remat", "none")
    if remat not in REMAT:
        raise PlanError(f"model.remat = {remat!r}; expected one of {REMAT}")
    sampler_weights = assumptions.get("sampler_weights", "train")
    if sampler_weights not in SAMPLER_WEIGHTS:
        raise PlanError(
            f"plan.sampler_weights = {sampler_weights!r}; expected one of {SAMPLER_WEIGHTS}"
        )
    mfu = float(assumptions.get("mfu", 0.4))
    if not 0 < mfu <= 1:
        raise PlanError(f"plan.mfu = {mfu}; expected a fraction in (0, 1]")
    fh, fw = assumptions["frame_size"]
    return Workload(
        mcfg=model_config(model_cfg["hf_config"]),
        b=_dtype_bytes(model_cfg["dtype"], "model.dtype"),
        pb=_dtype_bytes(model_cfg["param_dtype"], "model.param_dtype"),
        remat=remat,
        sampler_weights=sampler_weights,
        mfu=mfu,
        group=int(grpo["group_size"]),
        prompts=int(grpo["prompts_per_step"]),
        new_tokens=int(grpo["max_new_tokens"]) * int(assumptions.get("turns", 1)),
        frames=int(assumptions["frames"]),
        frame_size=(int(fh), int(fw)),
        text_tokens=int(assumptions["text_prompt_tokens"]),
        micro_batch=int(grpo["micro_batch"]),
        with_ref=float(grpo["kl_coef"]) > 0,
        dtype=model_cfg["dtype"],
    )


@dataclasses.dataclass(frozen=True)
class Layout:
    """The workload on the mesh: sequence shapes and what one device holds of them."""

    shape: dict[str, int]
    amesh: jax.sharding.AbstractMesh
    patches_frame: int
    tokens_frame: int
    patches: int  # vision patches per sequence
    prompt_len: int
    seq_len: int
    seqs: int  # sequences per step
    accum: int  # accumulation steps
    seq_dev: int  # sequences per device per accumulation step
    batch_shards: int  # data x fsdp


def lay_out(w: Workload, mesh_cfg: MeshConfig, topology: Topology) -> Layout:
    """Mesh shape and per-device sequence counts; a PlanError when the batch does not split."""
    shape = mesh_shape_for(mesh_cfg, topology)
    axes = mesh_cfg.axes
    amesh = jax.sharding.AbstractMesh(
        tuple(shape[a] for a in axes), axes, axis_types=(jax.sharding.AxisType.Auto,) * len(axes)
    )
    batch_shards = math.prod(shape.get(a, 1) for a in BATCH_AXES)
    if w.micro_batch % batch_shards:
        raise PlanError(
            f"grpo.micro_batch = {w.micro_batch} sequences must be a multiple of data x fsdp = "
            f"{batch_shards} (each batch shard needs whole sequences)"
        )
    seqs = w.prompts * w.group
    if seqs % w.micro_batch:
        raise PlanError(
            f"grpo.micro_batch = {w.micro_batch} does not divide prompts x group = {seqs}"
        )
    fh, fw = w.frame_size
    patches_frame, tokens_frame = vision_patches_per_frame(fh, fw, w.mcfg.vision.patch_size)
    prompt_len = w.frames * (tokens_frame + 2) + w.text_tokens
    return Layout(
        shape=shape,
        amesh=amesh,
        patches_frame=patches_frame,
        tokens_frame=tokens_frame,
        patches=w.frames * patches_frame,
        prompt_len=prompt_len,
        seq_len=prompt_len + w.new_tokens,
        seqs=seqs,
        accum=seqs // w.micro_batch,
        seq_dev=w.micro_batch // batch_shards,
        batch_shards=batch_shards,
    )


def input_lines(w: Workload, lay: Layout, topology: Topology) -> list[Line]:
    fh, fw = w.frame_size
    vis = w.mcfg.vision
    return [
        Line(
            "devices",
            topology.devices,
            f"{topology.name}: {topology.devices} x {topology.chip.name}, {topology.hosts} host(s)",
        ),
        Line(
            "vision patches / sample",
            lay.patches,
            f"{w.frames} frames x {lay.patches_frame} patches ({fh}x{fw} px -> "
            f"{vis.patch_size} px patches, {lay.tokens_frame} tokens each after 2x2 merge)",
        ),
        Line(
            "prompt tokens",
            lay.prompt_len,
            f"{w.frames} x ({lay.tokens_frame} + 2 vision start/end) + {w.text_tokens} text",
        ),
        Line("sequence length", lay.seq_len, f"{lay.prompt_len} prompt + {w.new_tokens} generated"),
        Line(
            "sequences / step",
            lay.seqs,
            f"{w.prompts} prompts x group {w.group}; micro-batch {w.micro_batch} "
            f"-> {lay.accum} accumulation step(s), {lay.seq_dev} sequence(s) per device",
        ),
    ]


def parameter_lines(w: Workload, lay: Layout, stats: ParamStats) -> tuple[list[Line], list[Line]]:
    """(parameter counts, resident bytes per device: policy, reference, AdamW moments)."""
    n_total, n_dev, n_vision, b, pb = stats.total, stats.per_device, stats.vision, w.b, w.pb
    params = [
        Line("parameters", n_total, f"{n_total / 1e9:.3f} B ({n_vision / 1e9:.3f} B vision)"),
        Line(
            "parameters / device",
            n_dev,
            f"sum of per-device shard sizes on mesh {lay.shape} = {n_total / n_dev:.1f}x fewer",
        ),
    ]
    resident = [
        Line("policy params", n_dev * pb, f"{n_dev / 1e6:.1f} M x {pb} B"),
        Line(
            "reference params (KL)",
            n_dev * b * w.with_ref,
            f"{n_dev / 1e6:.1f} M x {b} B"
            if w.with_ref
            else "grpo.kl_coef = 0: no reference model",
        ),
        # optax adamw: mu and nu in the parameter dtype
        Line("AdamW mu + nu", n_dev * 2 * pb, f"{n_dev / 1e6:.1f} M x 2 x {pb} B"),
    ]
    return params, resident


def train_memory_lines(w: Workload, lay: Layout, stats: ParamStats) -> list[Line]:
    """Gradients and activations of one accumulation step (analytical, `_layer_elements`)."""
    text, vis, b, pb, remat, amesh = w.mcfg.text, w.mcfg.vision, w.b, w.pb, w.remat, lay.amesh
    n_dev = stats.per_device
    d, hd = text.hidden_size, text.head_dim
    heads, kvh = text.num_attention_heads, text.num_key_value_heads
    dq, dkv, f = heads * hd, kvh * hd, text.intermediate_size
    t_q, t_kv = shards(heads, "q_heads", amesh), shards(kvh, "kv_heads", amesh)
    tokens_dev = lay.seq_dev * lay.seq_len
    kept, layer_full = _layer_elements(d, dq, dkv, f, heads, lay.seq_len, t_q, t_kv, b, remat)
    text_act = text.num_hidden_layers * kept * tokens_dev
    transient = 0 if remat == "none" else layer_full * tokens_dev
    dv, fv, hv = vis.hidden_size, vis.intermediate_size, vis.num_heads
    tv = shards(hv, "vision_heads", amesh)
    window_len = vis.merger_window**2 * vis.spatial_merge_unit
    n_full = len(vis.fullatt_block_indexes)
    n_window = vis.depth - n_full
    patches_dev = lay.seq_dev * lay.patches
    vk_w, vf_w = _layer_elements(dv, dv, dv, fv, hv, window_len, tv, tv, b, remat)
    vk_f, vf_f = _layer_elements(dv, dv, dv, fv, hv, lay.patches_frame, tv, tv, b, remat)
    vision_act = (n_window * vk_w + n_full * vk_f) * patches_dev
    vision_transient = 0 if remat == "none" else max(vf_w, vf_f) * patches_dev
    vocab_dev = text.vocab_size / shards(text.vocab_size, "vocab", amesh)
    logits = tokens_dev * vocab_dev * (b + 4)
    grad_copies = 2 if lay.accum > 1 else 1
    return [
        Line(
            "gradients",
            n_dev * pb * grad_copies,
            f"{n_dev / 1e6:.1f} M x {pb} B"
            + (" x 2 (accumulator + micro-step)" if lay.accum > 1 else ""),
        ),
        Line(
            f"decoder activations (remat {remat})",
            text_act,
            f"{text.num_hidden_layers} layers x {kept / 1e3:.1f} kB/token x {tokens_dev} tokens",
        ),
        Line(
            "decoder block being recomputed",
            transient,
            "none (no remat)"
            if remat == "none"
            else f"{layer_full / 1e3:.1f} kB/token x {tokens_dev} tokens",
        ),
        Line(
            f"vision activations (remat {remat})",
            vision_act + vision_transient,
            f"({n_window} window x {vk_w / 1e3:.1f} + {n_full} full x {vk_f / 1e3:.1f}) "
            f"kB/patch x {patches_dev} patches"
            + ("" if remat == "none" else f" + one block {max(vf_w, vf_f) / 1e3:.1f} kB/patch"),
        ),
        Line(
            "logits + f32 log-softmax",
            logits,
            f"{tokens_dev} tokens x {vocab_dev:.0f} vocab/device x ({b} + 4) B",
        ),
    ]


def measured_memory_lines(
    w: Workload, lay: Layout, analytical: list[Line], warnings: list[str]
) -> list[Line]:
    """`analytical` with its decoder-activation and logits lines replaced by XLA's buffer
    assignment of the real model on the local backend (jaxseg/parallel/measure.py)."""
    from .measure import measure_decoder

    text = w.mcfg.text
    try:
        mem = measure_decoder(w.mcfg, lay.seq_dev, lay.seq_len, jnp.dtype(w.dtype), remat=w.remat)
    except ValueError as err:
        raise PlanError(f"--measure: {err}") from err
    drop = ("decoder activations", "decoder block being recomputed", "logits + f32")
    estimate = sum(x.value for x in analytical if x.label.startswith(drop))
    measured = text.num_hidden_layers * mem.per_layer_bytes + mem.rest_bytes
    lines = [x for x in analytical if not x.label.startswith(drop)]
    lines.append(
        Line(
            f"decoder + logits (XLA {mem.backend}, measured)",
            measured,
            f"{text.num_hidden_layers} layers x {mem.per_layer_bytes / GB:.3f} GB + "
            f"{mem.rest_bytes / GB:.2f} GB (1- vs 2-layer compile, {lay.seq_dev} x {lay.seq_len} "
            f"tokens); analytical {estimate / GB:.2f} GB",
        )
    )
    if lay.shape.get("tensor", 1) > 1:
        warnings.append("measured on one device without tensor sharding: an upper bound")
    return lines


def kv_cache_bytes(w: Workload, lay: Layout) -> tuple[float, tuple[int, ...]]:
    """(KV cache bytes per device, one layer's k shard shape) of the rollout's cache, placed
    as the sampler places it (`kv_cache_shardings`)."""
    text = w.mcfg.text
    cache_shape = (lay.seqs, lay.seq_len, text.num_key_value_heads, text.head_dim)
    kv_shard = named_sharding(cache_shape, KV_CACHE_AXES, lay.amesh).shard_shape(cache_shape)
    return math.prod(kv_shard) * 2 * text.num_hidden_layers * w.b, kv_shard


def rollout_memory_lines(w: Workload, lay: Layout, stats: ParamStats) -> list[Line]:
    """The sampler's weights copy, KV cache and one layer's prefill attention scores."""
    text, b, amesh = w.mcfg.text, w.b, lay.amesh
    heads, kvh, hd = text.num_attention_heads, text.num_key_value_heads, text.head_dim
    t = lay.shape.get("tensor", 1)
    kv_dev, kv_shard = kv_cache_bytes(w, lay)
    heads_dev = heads // shards(heads, "q_heads", amesh)
    prompts_dev = max(1, math.ceil(w.prompts / lay.batch_shards))
    prefill_scores = prompts_dev * heads_dev * lay.prompt_len**2 * (2 * b + 4)
    copy_bytes = stats.total / t * b if w.sampler_weights == "copy" else 0.0
    return [
        Line(
            "sampler weights copy",
            copy_bytes,
            f"{stats.total / 1e9:.3f} B / tensor {t} x {b} B (replicated over data x fsdp)"
            if copy_bytes
            else "plan.sampler_weights = 'train': samples with the training shards",
        ),
        Line(
            "KV cache",
            kv_dev,
            f"[{lay.seqs} rows, {lay.seq_len} slots, {kvh} KV heads, {hd}] -> shard "
            f"{list(kv_shard)} x 2 (k, v) x {text.num_hidden_layers} layers x {b} B",
        ),
        Line(
            "prefill attention scores (1 layer)",
            prefill_scores,
            f"{prompts_dev} prompt(s) x {heads_dev} heads x {lay.prompt_len}^2 x "
            f"({b} + 4 + {b}) B (group shares one prefill)",
        ),
    ]


def flops_and_time(
    w: Workload, lay: Layout, stats: ParamStats, topology: Topology, warnings: list[str]
) -> tuple[list[Line], list[Line]]:
    """FLOPs per GRPO step and the time they take (decode: the largest of FLOPs, HBM reads
    and the FSDP all-gather)."""
    text, vis, b, pb, remat = w.mcfg.text, w.mcfg.vision, w.b, w.pb, w.remat
    n_text_mm, n_vis_mm, n_merger = stats.text_matmul, stats.vision_matmul, stats.merger_matmul
    n_total, n_dev = stats.total, stats.per_device
    L, dq = text.num_hidden_layers, text.num_attention_heads * text.head_dim
    dv = vis.hidden_size
    window_len = vis.merger_window**2 * vis.spatial_merge_unit
    n_full = len(vis.fullatt_block_indexes)
    n_window = vis.depth - n_full
    seqs, seq_len, prompt_len, patches = lay.seqs, lay.seq_len, lay.prompt_len, lay.patches
    t = lay.shape.get("tensor", 1)

    def text_fwd(tokens: int, ctx: int) -> float:
        return tokens * (2 * n_text_mm + 4 * L * dq * ctx)

    vis_fwd = (
        2 * n_vis_mm * patches
        + 4 * dv * patches * (n_window * window_len + n_full * lay.patches_frame)
        + 2 * n_merger * patches / 4
    )
    recompute = 4 / 3 if remat == "full" else 1.0
    f_train = seqs * 3 * (text_fwd(seq_len, seq_len) + vis_fwd) * recompute
    f_ref = seqs * (text_fwd(seq_len, seq_len) + vis_fwd) * w.with_ref
    f_prefill = w.prompts * (text_fwd(prompt_len, prompt_len) + vis_fwd)
    f_decode = seqs * w.new_tokens * (2 * n_text_mm + 4 * L * dq * seq_len)
    flops = [
        Line(
            "train (fwd+bwd)",
            f_train,
            f"{seqs} seq x 3 x ({seq_len} tok x (2 x {n_text_mm / 1e9:.3f} B + attn "
            f"4 x {L} x {dq} x {seq_len}) + vision {vis_fwd / 1e12:.2f} TF)"
            + (" x 4/3 (full remat)" if remat == "full" else ""),
        ),
        Line(
            "reference forward",
            f_ref,
            f"{seqs} seq x ({seq_len} tok x (2 x {n_text_mm / 1e9:.3f} B + attn) + vision)"
            if w.with_ref
            else "no reference model",
        ),
        Line("rollout prefill", f_prefill, f"{w.prompts} prompts x ({prompt_len} tok + vision)"),
        Line(
            "rollout decode",
            f_decode,
            f"{seqs} rows x {w.new_tokens} tok x (2 x {n_text_mm / 1e9:.3f} B + attn over "
            f"{seq_len} slots)",
        ),
    ]
    chip = topology.chip
    rate = topology.devices * chip.peak_bf16_flops * w.mfu
    decode_flops_t = f_decode / rate
    # Each decode step multiplies by every weight of this device's tensor shard. Training
    # shards under FSDP are all-gathered first (ICI) every token; a copy is gathered once per
    # step (the weight sync). Then weights and this device's cache rows are read from HBM.
    gather_all = max(0.0, n_total / t - n_dev)  # parameters this device does not hold
    if w.sampler_weights == "copy":
        weights_dev, gathered, sync = n_total / t * b, 0.0, gather_all * b  # cast, then gather
    else:
        weights_dev, gathered, sync = n_total / t * pb, gather_all * pb, 0.0
    kv_dev, _ = kv_cache_bytes(w, lay)
    decode_hbm_t = w.new_tokens * (weights_dev + kv_dev) / chip.hbm_bytes_per_s
    decode_gather_t = w.new_tokens * gathered / chip.link_bytes_per_s
    sync_t = sync / chip.link_bytes_per_s
    decode_t = max(decode_flops_t, decode_hbm_t, decode_gather_t)
    time = [
        Line(
            "train",
            f_train / rate,
            f"{f_train / 1e15:.1f} PF / ({topology.devices} x {chip.peak_bf16_flops / 1e12:.0f} "
            f"TF/s x MFU {w.mfu})",
        ),
        Line("reference forward", f_ref / rate, f"{f_ref / 1e15:.1f} PF / same rate"),
        Line("rollout prefill", f_prefill / rate, f"{f_prefill / 1e15:.1f} PF / same rate"),
        Line(
            "rollout decode",
            decode_t,
            f"max(FLOPs {decode_flops_t:.2f} s, HBM {w.new_tokens} x "
            f"({weights_dev / GB:.2f} + {kv_dev / GB:.2f}) GB / {chip.hbm_bytes_per_s / 1e9:.0f} "
            f"GB/s = {decode_hbm_t:.2f} s, FSDP all-gather {w.new_tokens} x {gathered / GB:.2f} GB"
            f" / {chip.link_bytes_per_s / 1e9:.0f} GB/s = {decode_gather_t:.2f} s)",
        ),
        Line(
            "sampler weight sync",
            sync_t,
            f"{sync / GB:.2f} GB all-gathered / {chip.link_bytes_per_s / 1e9:.0f} GB/s"
            if sync
            else "none (samples with the training shards)",
        ),
    ]
    if decode_gather_t > 2 * max(decode_flops_t, decode_hbm_t):
        warnings.append(
            f"decoding is bound by all-gathering FSDP-sharded weights ({decode_gather_t:.1f} s "
            "per rollout): set plan.sampler_weights = 'copy' (a tensor-sharded compute-dtype "
            "copy for sampling, tunix's no-FSDP sampling layout)"
        )
    return flops, time


def fit_warnings(topology: Topology, phases: Mapping[str, list[Line]]) -> list[str]:
    """A warning per phase that does not fit (or uses > 90% of HBM)."""
    hbm, chip = topology.chip.hbm_bytes, topology.chip
    warnings = []
    for name, lines in phases.items():
        total = sum(line.value for line in lines)
        if total > hbm:
            warnings.append(
                f"does not fit: {name} phase needs {total / GB:.1f} GB per device, "
                f"{chip.name} has {hbm / GB:.1f} GB"
            )
        elif total > 0.9 * hbm:
            warnings.append(f"tight: {name} phase uses {100 * total / hbm:.0f}% of HBM (> 90%)")
    return warnings


def kv_head_warnings(w: Workload, lay: Layout) -> list[str]:
    """A warning when the tensor axis cannot split the KV heads (the cache is replicated)."""
    kvh, t = w.mcfg.text.num_key_value_heads, lay.shape.get("tensor", 1)
    if shards(kvh, "kv_heads", lay.amesh) == t:
        return []
    return [
        f"tensor = {t} does not divide {kvh} KV heads: the KV cache is replicated over the "
        "tensor axis"
    ]


def plan(config: Mapping[str, Any], topology: Topology, *, measure: bool = False) -> Plan:
    """Evaluates `config` (a GRPO config: model, mesh, grpo and plan blocks) on `topology`.
    Raises PlanError naming the field when the config cannot be laid out.

    `measure`: replace the analytical decoder-activation and logits lines by XLA's buffer
    assignment of the real model on the local backend (jaxseg/parallel/measure.py)."""
    w = read_workload(config)
    lay = lay_out(w, MeshConfig.from_config(config.get("mesh")), topology)
    stats = param_stats(w.mcfg, tuple(lay.shape.items()))
    warnings: list[str] = []
    params, resident = parameter_lines(w, lay, stats)
    train = resident + train_memory_lines(w, lay, stats)
    if measure:
        train = measured_memory_lines(w, lay, train, warnings)
    rollout = resident + rollout_memory_lines(w, lay, stats)
    warnings += fit_warnings(topology, {"train": train, "rollout": rollout})
    flops, time = flops_and_time(w, lay, stats, topology, warnings)
    warnings += kv_head_warnings(w, lay)
    inputs = input_lines(w, lay, topology)
    return Plan(topology, lay.shape, inputs, params, train, rollout, flops, time, warnings)


def remat_options(config: Mapping[str, Any], topology: Topology) -> dict[str, Plan]:
    """The plan of `config` under every remat policy (same mesh, workload and assumptions):
    the trade of activation memory against recompute FLOPs, side by side."""
    plans = {}
    base = config if isinstance(config, ConfigDict) else ConfigDict(config)
    for policy in REMAT:
        variant = base.copy_and_resolve_references()
        variant.model.remat = policy
        plans[policy] = plan(variant, topology)
    return plans


def format_remat_options(plans: Mapping[str, Plan]) -> str:
    """One line per remat policy: peak GB per device (train phase), step time, verdict."""
    out = ["remat policies (model.remat; the model's per-block nnx.remat)"]
    for policy, p in plans.items():
        step = sum(x.value for x in p.time)
        verdict = "fits" if p.fits else "DOES NOT FIT"
        out.append(
            f"  {policy:<14} train phase {p.total('train') / GB:7.1f} GB / device, "
            f"step {step:6.2f} s  -> {verdict}"
        )
    return "\n".join(out)


# ----------------------------------------------------------------------------- report
def _fmt(value: float, unit: str) -> str:
    if unit == "B":
        return f"{value / GB:9.2f} GB"
    if unit == "F":
        return f"{value / 1e15:9.2f} PF"
    if unit == "s":
        return f"{value:9.2f} s "
    return f"{value:12,.0f}"


def format_plan(p: Plan) -> str:
    chip = p.topology.chip
    out = [
        f"plan: {p.topology.name} ({p.topology.devices} x {chip.name}, {chip.hbm_bytes / GB:.0f} GB "
        f"HBM, {chip.peak_bf16_flops / 1e12:.0f} TF/s bf16), mesh {p.mesh_shape}",
        "",
    ]

    def section(title, lines, unit, total_label=None):
        out.append(title)
        for line in lines:
            out.append(f"  {line.label:<44} {_fmt(line.value, unit)}   = {line.arithmetic}")
        if total_label:
            total = sum(line.value for line in lines)
            out.append(
                f"  {total_label:<44} {_fmt(total, unit)}   "
                f"({100 * total / chip.hbm_bytes:.0f}% of {chip.hbm_bytes / GB:.0f} GB)"
            )
        out.append("")

    section("inputs", p.inputs, "n")
    section("parameters", p.params, "n")
    section("memory per device, training phase", p.train, "B", "total")
    section("memory per device, rollout phase", p.rollout, "B", "total")
    section("FLOPs per GRPO step", p.flops, "F")
    section("time per GRPO step", p.time, "s")
    out.append(f"  {'step total':<44} {_fmt(sum(x.value for x in p.time), 's')}")
    out.append("")
    verdict = "fits" if p.fits else "DOES NOT FIT"
    out.append(f"peak {p.peak_bytes / GB:.1f} GB / device -> {verdict}")
    for w in p.warnings:
        out.append(f"WARNING: {w}")
    return "\n".join(out)
