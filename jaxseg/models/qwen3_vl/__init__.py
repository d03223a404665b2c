"""Qwen3-VL in Flax nnx, numerically the function of transformers'
`Qwen3VLForConditionalGeneration` (pinned transformers 5.23): learned absolute position table
in the vision tower, interleaved M-RoPE, DeepStack, Qwen3 decoder (q/k norms).

    from jaxseg.models.qwen3_vl import from_pretrained, save_pretrained
    model = from_pretrained("ckpt_dir")
    logits = model(input_ids, attention_mask=..., pixel_values=..., image_grid_thw=...)

Under jit, compute `vision_layout` and `get_rope_index` on host and call `model.forward`.
"""

from .config import Qwen3VLConfig, TextConfig, VisionConfig
from .model import Qwen3VLForConditionalGeneration
from .rope import get_rope_index
from .vision_layout import VisionLayout, vision_layout
from .weights import WEIGHT_TABLE, WeightsError, from_pretrained, save_pretrained

__all__ = [
    "WEIGHT_TABLE",
    "Qwen3VLConfig",
    "Qwen3VLForConditionalGeneration",
    "TextConfig",
    "VisionConfig",
    "VisionLayout",
    "WeightsError",
    "from_pretrained",
    "get_rope_index",
    "save_pretrained",
    "vision_layout",
]
