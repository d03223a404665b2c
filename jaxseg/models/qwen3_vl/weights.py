"""Hugging Face safetensors <-> nnx parameters for Qwen3-VL: the name table (`WEIGHT_TABLE`)
and the loader/saver of `jaxseg.models.hf_weights` bound to it. The released Qwen3-VL
checkpoints already use transformers-5 module names (`model.visual.*`,
`model.language_model.*`, `lm_head.weight`), so there is one layout."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp

from jaxseg.models.hf_weights import WeightsError, WeightTable
from jaxseg.models.hf_weights import load_pretrained as _load
from jaxseg.models.hf_weights import save_pretrained as _save

from .config import Qwen3VLConfig
from .model import Qwen3VLForConditionalGeneration

_GROUPS = {
    "i": r"\d+",
    "k": r"\d+",
    "norm": r"norm1|norm2",
    "attn": r"qkv|proj",
    "fc": r"linear_fc1|linear_fc2",
    "mlp": r"gate_proj|up_proj|down_proj",
    "qkvo": r"q_proj|k_proj|v_proj|o_proj",
    "qk": r"q_norm|k_norm",
    "ln": r"input_layernorm|post_attention_layernorm",
    "wb": r"weight|bias",
}
_V = "model.visual"
_T = "model.language_model"
_TABLE: list[tuple[str, str, str]] = [
    (f"{_V}.patch_embed.proj.weight", "visual.patch_embed.kernel", "patch"),
    (f"{_V}.patch_embed.proj.bias", "visual.patch_embed.bias", "id"),
    (f"{_V}.pos_embed.weight", "visual.pos_embed", "id"),
    (f"{_V}.blocks.{{i}}.{{norm}}.{{wb}}", "visual.blocks.{i}.{norm}.{wb}", "id"),
    (f"{_V}.blocks.{{i}}.attn.{{attn}}.weight", "visual.blocks.{i}.attn.{attn}.kernel", "t"),
    (f"{_V}.blocks.{{i}}.attn.{{attn}}.bias", "visual.blocks.{i}.attn.{attn}.bias", "id"),
    (f"{_V}.blocks.{{i}}.mlp.{{fc}}.weight", "visual.blocks.{i}.mlp.{fc}.kernel", "t"),
    (f"{_V}.blocks.{{i}}.mlp.{{fc}}.bias", "visual.blocks.{i}.mlp.{fc}.bias", "id"),
    (f"{_V}.merger.norm.{{wb}}", "visual.merger.norm.{wb}", "id"),
    (f"{_V}.merger.{{fc}}.weight", "visual.merger.{fc}.kernel", "t"),
    (f"{_V}.merger.{{fc}}.bias", "visual.merger.{fc}.bias", "id"),
    (
        f"{_V}.deepstack_merger_list.{{k}}.norm.{{wb}}",
        "visual.deepstack_merger_list.{k}.norm.{wb}",
        "id",
    ),
    (
        f"{_V}.deepstack_merger_list.{{k}}.{{fc}}.weight",
        "visual.deepstack_merger_list.{k}.{fc}.kernel",
        "t",
    ),
    (
        f"{_V}.deepstack_merger_list.{{k}}.{{fc}}.bias",
        "visual.deepstack_merger_list.{k}.{fc}.bias",
        "id",
    ),
    (f"{_T}.embed_tokens.weight", "language_model.embed_tokens.embedding", "id"),
    (
        f"{_T}.layers.{{i}}.self_attn.{{qkvo}}.weight",
        "language_model.layers.{i}.self_attn.{qkvo}.kernel",
        "t",
    ),
    (
        f"{_T}.layers.{{i}}.self_attn.{{qkvo}}.bias",
        "language_model.layers.{i}.self_attn.{qkvo}.bias",
        "id",
    ),
    (
        f"{_T}.layers.{{i}}.self_attn.{{qk}}.weight",
        "language_model.layers.{i}.self_attn.{qk}.weight",
        "id",
    ),
    (f"{_T}.layers.{{i}}.mlp.{{mlp}}.weight", "language_model.layers.{i}.mlp.{mlp}.kernel", "t"),
    (f"{_T}.layers.{{i}}.{{ln}}.weight", "language_model.layers.{i}.{ln}.weight", "id"),
    (f"{_T}.norm.weight", "language_model.norm.weight", "id"),
    ("lm_head.weight", "lm_head.kernel", "t"),
]

WEIGHT_TABLE = WeightTable(entries=_TABLE, groups=_GROUPS)


def from_pretrained(
    directory: str | Path,
    *,
    dtype: jnp.dtype = jnp.float32,
    param_dtype: jnp.dtype | None = None,
    mesh: jax.sharding.Mesh | None = None,
    rules=None,
) -> Qwen3VLForConditionalGeneration:
    """Loads a Qwen3-VL HF checkpoint directory (config.json + safetensors); loud on any
    missing, unexpected or mis-shaped tensor (`WeightsError`)."""
    config = Qwen3VLConfig.from_json_file(Path(directory) / "config.json")
    pdt = dtype if param_dtype is None else param_dtype
    return _load(
        directory,
        config=config,
        build=lambda: Qwen3VLForConditionalGeneration(config, dtype=dtype, param_dtype=pdt),
        table=WEIGHT_TABLE,
        dtype=dtype,
        param_dtype=param_dtype,
        mesh=mesh,
        rules=rules,
    )


def save_pretrained(
    model: Qwen3VLForConditionalGeneration,
    out_dir: str | Path,
    reference_dir: str | Path | None = None,
    *,
    max_shard_bytes: int = 5 * 1024**3,
    layout: str = "released",
) -> list[Path]:
    """Writes safetensors + config.json that transformers' `Qwen3VLForConditionalGeneration`
    loads."""
    return _save(
        model,
        out_dir,
        reference_dir,
        table=WEIGHT_TABLE,
        max_shard_bytes=max_shard_bytes,
        layout=layout,
    )


__all__ = ["WEIGHT_TABLE", "WeightsError", "from_pretrained", "save_pretrained"]
