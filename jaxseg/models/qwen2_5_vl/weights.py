"""Hugging Face safetensors <-> nnx parameters for Qwen2.5-VL: the name table
(`WEIGHT_TABLE`) and the loader/saver of `jaxseg.models.hf_weights` bound to it.

Both key layouts load: the released checkpoints' (`visual.*`, `model.layers.*`,
`model.embed_tokens.*`) and transformers-5 module names (`model.visual.*`,
`model.language_model.*`); saving writes the released layout by default.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp

from ..hf_weights import WeightsError, WeightTable
from ..hf_weights import load_pretrained as _load
from ..hf_weights import save_pretrained as _save
from .config import Qwen2_5_VLConfig
from .model import Qwen2_5_VLForConditionalGeneration

# ----------------------------------------------------------------------------- mapping table
# (HF name template, nnx path template, transform). `{i}` = layer index, `{x}` = alternatives
# listed in _GROUPS. HF names are in transformers-5 form; `_canonical_hf_name` maps the
# released layout onto it.
_GROUPS = {
    "i": r"\d+",
    "norm": r"norm1|norm2",
    "attn": r"qkv|proj",
    "mlp": r"gate_proj|up_proj|down_proj",
    "qkvo": r"q_proj|k_proj|v_proj|o_proj",
    "qkv": r"q_proj|k_proj|v_proj",
    "ln": r"input_layernorm|post_attention_layernorm",
}
_V = "model.visual"
_T = "model.language_model"
_TABLE: list[tuple[str, str, str]] = [
    (f"{_V}.patch_embed.proj.weight", "visual.patch_embed.kernel", "patch"),
    (f"{_V}.blocks.{{i}}.{{norm}}.weight", "visual.blocks.{i}.{norm}.weight", "id"),
    (f"{_V}.blocks.{{i}}.attn.{{attn}}.weight", "visual.blocks.{i}.attn.{attn}.kernel", "t"),
    (f"{_V}.blocks.{{i}}.attn.{{attn}}.bias", "visual.blocks.{i}.attn.{attn}.bias", "id"),
    (f"{_V}.blocks.{{i}}.mlp.{{mlp}}.weight", "visual.blocks.{i}.mlp.{mlp}.kernel", "t"),
    (f"{_V}.blocks.{{i}}.mlp.{{mlp}}.bias", "visual.blocks.{i}.mlp.{mlp}.bias", "id"),
    (f"{_V}.merger.ln_q.weight", "visual.merger.ln_q.weight", "id"),
    (f"{_V}.merger.mlp.0.weight", "visual.merger.fc1.kernel", "t"),
    (f"{_V}.merger.mlp.0.bias", "visual.merger.fc1.bias", "id"),
    (f"{_V}.merger.mlp.2.weight", "visual.merger.fc2.kernel", "t"),
    (f"{_V}.merger.mlp.2.bias", "visual.merger.fc2.bias", "id"),
    (f"{_T}.embed_tokens.weight", "language_model.embed_tokens.embedding", "id"),
    (
        f"{_T}.layers.{{i}}.self_attn.{{qkvo}}.weight",
        "language_model.layers.{i}.self_attn.{qkvo}.kernel",
        "t",
    ),
    (
        f"{_T}.layers.{{i}}.self_attn.{{qkv}}.bias",
        "language_model.layers.{i}.self_attn.{qkv}.bias",
        "id",
    ),
    (f"{_T}.layers.{{i}}.mlp.{{mlp}}.weight", "language_model.layers.{i}.mlp.{mlp}.kernel", "t"),
    (f"{_T}.layers.{{i}}.{{ln}}.weight", "language_model.layers.{i}.{ln}.weight", "id"),
    (f"{_T}.norm.weight", "language_model.norm.weight", "id"),
    ("lm_head.weight", "lm_head.kernel", "t"),
]


def _canonical_hf_name(name: str) -> str:
    """Released layout -> transformers-5 names (`visual.` -> `model.visual.`, `model.X` ->
    `model.language_model.X`)."""
    if name.startswith("visual."):
        return "model." + name
    if name.startswith("model.") and not name.startswith(("model.visual.", f"{_T}.")):
        return f"{_T}." + name[len("model.") :]
    return name


def _released_hf_name(name: str) -> str:
    if name.startswith("model.visual."):
        return name[len("model.") :]
    if name.startswith(f"{_T}."):
        return "model." + name[len(f"{_T}.") :]
    return name


WEIGHT_TABLE = WeightTable(
    entries=_TABLE,
    groups=_GROUPS,
    canonical=_canonical_hf_name,
    released=_released_hf_name,
)
hf_to_nnx_path = WEIGHT_TABLE.hf_to_nnx_path
nnx_path_to_hf = WEIGHT_TABLE.nnx_path_to_hf


def from_pretrained(
    directory: str | Path,
    *,
    dtype: jnp.dtype = jnp.float32,
    param_dtype: jnp.dtype | None = None,
    mesh: jax.sharding.Mesh | None = None,
    rules=None,
) -> Qwen2_5_VLForConditionalGeneration:
    """Loads a Qwen2.5-VL HF checkpoint directory (config.json + safetensors).

    dtype: computation dtype; param_dtype: storage dtype (defaults to dtype). With `mesh`,
    parameters are placed with the logical->mesh `rules` (jaxseg.parallel.rules.RULES)."""
    config = Qwen2_5_VLConfig.from_json_file(Path(directory) / "config.json")
    pdt = dtype if param_dtype is None else param_dtype
    return _load(
        directory,
        config=config,
        build=lambda: Qwen2_5_VLForConditionalGeneration(
            config, dtype=dtype, param_dtype=pdt, rngs=None
        ),
        table=WEIGHT_TABLE,
        dtype=dtype,
        param_dtype=param_dtype,
        mesh=mesh,
        rules=rules,
    )


def save_pretrained(
    model: Qwen2_5_VLForConditionalGeneration,
    out_dir: str | Path,
    reference_dir: str | Path | None = None,
    *,
    max_shard_bytes: int = 5 * 1024**3,
    layout: str = "released",
) -> list[Path]:
    """Writes safetensors + config.json that transformers loads (`hf_weights.save_pretrained`)."""
    return _save(
        model,
        out_dir,
        reference_dir,
        table=WEIGHT_TABLE,
        max_shard_bytes=max_shard_bytes,
        layout=layout,
    )


__all__ = [
    "WEIGHT_TABLE",
    "WeightsError",
    "from_pretrained",
    "hf_to_nnx_path",
    "nnx_path_to_hf",
    "save_pretrained",
]
