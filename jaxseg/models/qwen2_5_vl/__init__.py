"""Qwen2.5-VL in Flax nnx, numerically the function of transformers'
`Qwen2_5_VLForConditionalGeneration` (pinned transformers 5.23).

    from jaxseg.models.qwen2_5_vl import from_pretrained, save_pretrained
    model = from_pretrained("ckpt_dir", dtype=jnp.bfloat16)          # HF safetensors dir
    logits = model(input_ids, attention_mask=..., pixel_values=..., image_grid_thw=...,
                   pixel_values_videos=..., video_grid_thw=..., second_per_grid_ts=...)
    save_pretrained(model, "out_dir", reference_dir="ckpt_dir")      # transformers loads it

Under jit, compute the host-side pieces first (the host encoder, jaxseg.models.inputs, or
`vision_layout` and `get_rope_index` directly) and use `embed_and_merge` + `decode` (which also
takes a preallocated `KVCache`).
"""

from ..kv_cache import KVCache
from .config import ConfigError, Qwen2_5_VLConfig, TextConfig, VisionConfig
from .model import (
    Qwen2_5_VLForConditionalGeneration,
    merge_features,
)
from .rope import get_rope_index, mm_token_type_ids_from_input_ids
from .vision_layout import VisionLayout, vision_layout
from .weights import WeightsError, from_pretrained, save_pretrained

__all__ = [
    "ConfigError",
    "KVCache",
    "Qwen2_5_VLConfig",
    "Qwen2_5_VLForConditionalGeneration",
    "TextConfig",
    "VisionConfig",
    "VisionLayout",
    "WeightsError",
    "from_pretrained",
    "get_rope_index",
    "merge_features",
    "mm_token_type_ids_from_input_ids",
    "save_pretrained",
    "vision_layout",
]
