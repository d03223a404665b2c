"""Named small configs of the Qwen2.5-VL architecture, for CPU runs and tests.

Same module tree, M-RoPE, window attention and merger as the released models (so every code
path, HF export included, is the real one); only widths, depths and the vocabulary shrink.
The released 3B/7B configs live in ``configs/hf/`` and load with
``Qwen2_5_VLConfig.from_json_file``.
"""

from __future__ import annotations

from .config import Qwen2_5_VLConfig, TextConfig, VisionConfig

#  name: (vision depth, vision width, text layers, text width, heads, kv heads)
SIZES = {
    "nano": (2, 32, 2, 64, 4, 2),
    "tiny": (2, 64, 4, 128, 4, 2),
    "small": (4, 96, 6, 256, 8, 4),
}


def preset_config(
    size: str,
    *,
    vocab_size: int,
    image_token_id: int,
    video_token_id: int,
    vision_start_token_id: int,
    vision_end_token_id: int,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
    bos_token_id: int | None = None,
    window_size: int = 56,
    tie_word_embeddings: bool = True,
) -> Qwen2_5_VLConfig:
    """A Qwen2.5-VL config of a named size for a tokenizer's vocabulary and special ids.

    window_size 56 px = 2x2 merged tokens, so a 112-160 px frame has several attention
    windows, as a 448 px frame has with the released 112 px windows; the last vision block
    is a full-attention block, as in the released models."""
    if size not in SIZES:
        raise ValueError(f"unknown model size {size!r}; choose one of {sorted(SIZES)}")
    v_depth, v_width, t_layers, t_width, heads, kv_heads = SIZES[size]
    head_dim = t_width // heads
    quarter = head_dim // 2 // 4  # mrope sections over head_dim/2 rotary frequencies: 1:1.5:1.5
    mrope = (head_dim // 2 - 3 * quarter, (3 * quarter + 1) // 2, 3 * quarter // 2)
    return Qwen2_5_VLConfig(
        vision=VisionConfig(
            depth=v_depth,
            hidden_size=v_width,
            intermediate_size=v_width * 2,
            num_heads=max(v_width // 32, 1),
            out_hidden_size=t_width,
            patch_size=14,
            temporal_patch_size=2,
            spatial_merge_size=2,
            window_size=window_size,
            fullatt_block_indexes=(v_depth - 1,),
            tokens_per_second=2,
        ),
        text=TextConfig(
            vocab_size=vocab_size,
            hidden_size=t_width,
            intermediate_size=t_width * 3,
            num_hidden_layers=t_layers,
            num_attention_heads=heads,
            num_key_value_heads=kv_heads,
            rms_norm_eps=1e-6,
            rope_theta=10000.0,
            mrope_section=mrope,
            max_position_embeddings=8192,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
        ),
        image_token_id=image_token_id,
        video_token_id=video_token_id,
        vision_start_token_id=vision_start_token_id,
        vision_end_token_id=vision_end_token_id,
        tie_word_embeddings=tie_word_embeddings,
    )
