"""Named small configs of the Qwen3-VL architecture, for CPU runs and tests.

Same module tree as the released models (patch-16 vision tower with a learned position table,
DeepStack mergers, Qwen3 decoder with q/k norms, interleaved M-RoPE, theta 5e6), only widths,
depths and the vocabulary shrink. The released 2B/4B configs live in ``configs/hf/``.
"""

from __future__ import annotations

from .config import Qwen3VLConfig, TextConfig, VisionConfig

#  name: (vision depth, vision width, text layers, text width, heads, kv heads, head_dim,
#         deepstack levels, learned position grid side)
SIZES = {
    "nano": (2, 32, 2, 64, 4, 2, 16, (0,), 8),
    "tiny": (2, 64, 4, 128, 4, 2, 32, (0,), 8),
    "small": (4, 96, 6, 256, 8, 4, 32, (1, 2), 12),
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
    tie_word_embeddings: bool = True,
) -> Qwen3VLConfig:
    """A Qwen3-VL config of a named size for a tokenizer's vocabulary and special ids.

    The learned position grid (8x8 for nano/tiny) covers a 128 px frame at patch 16 one to one;
    other sizes are resampled bilinearly, as the released 48x48 grid is. M-RoPE sections keep
    the released 24:20:20 proportions of head_dim/2 (t gets the remainder)."""
    if size not in SIZES:
        raise ValueError(f"unknown model size {size!r}; choose one of {sorted(SIZES)}")
    v_depth, v_width, layers, width, heads, kv_heads, head_dim, deep, side = SIZES[size]
    half = head_dim // 2
    hw = round(half * 20 / 64)
    mrope = (half - 2 * hw, hw, hw)
    return Qwen3VLConfig(
        vision=VisionConfig(
            depth=v_depth,
            hidden_size=v_width,
            intermediate_size=v_width * 2,
            num_heads=max(v_width // 32, 1),
            out_hidden_size=width,
            patch_size=16,
            temporal_patch_size=2,
            spatial_merge_size=2,
            num_position_embeddings=side * side,
            deepstack_visual_indexes=deep,
        ),
        text=TextConfig(
            vocab_size=vocab_size,
            hidden_size=width,
            intermediate_size=width * 3,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=kv_heads,
            head_dim=head_dim,
            rms_norm_eps=1e-6,
            rope_theta=5_000_000.0,
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
