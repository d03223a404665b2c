"""The tiny random transformers Qwen2.5-VL that parity tests compare against (one definition).

Text: 2 layers, width 64, 4 heads / 2 KV heads, M-RoPE sections (2, 3, 3). Vision: width 32,
window 112 px = 4x4 merged tokens, so small grids still span several windows. Callers pick the
vocabulary, special ids, vision depth and full-attention blocks (the awkward layouts they test).
"""

from __future__ import annotations


def tiny_hf_config(
    *,
    vocab: int,
    ids: dict,
    vision_depth: int = 4,
    fullatt=(1,),
    tie_word_embeddings: bool = False,
):
    from transformers import Qwen2_5_VLConfig

    return Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=vocab,
            hidden_size=64,
            intermediate_size=96,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=4096,
            rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 1e4},
            rms_norm_eps=1e-6,
            bos_token_id=None,
            eos_token_id=None,
        ),
        vision_config=dict(
            depth=vision_depth,
            hidden_size=32,
            intermediate_size=48,
            num_heads=2,
            out_hidden_size=64,
            fullatt_block_indexes=list(fullatt),
            window_size=112,
            tokens_per_second=2,
        ),
        image_token_id=ids["image_token_id"],
        video_token_id=ids["video_token_id"],
        vision_start_token_id=ids["vision_start_token_id"],
        vision_end_token_id=ids["vision_end_token_id"],
        tie_word_embeddings=tie_word_embeddings,
        attn_implementation="eager",
    )


def build_hf(config, seed: int = 0):
    """A random model of `config` whose norms and biases are perturbed away from their 1 / 0
    init, so loading them is tested too."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name or "ln_q" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


def tiny_hf_qwen3_config(
    *,
    vocab: int,
    ids: dict,
    deepstack=(0, 2),
    tie_word_embeddings: bool = False,
    num_position_embeddings: int = 36,
    patch_size: int = 16,
    spatial_merge_size: int = 2,
):
    """A tiny transformers Qwen3-VL: text 3 layers, width 64, head_dim 16, 4 heads / 2 KV heads,
    interleaved M-RoPE sections (2, 3, 3); vision depth 3, width 32, patch 16 merged 2x2 (or
    `patch_size` / `spatial_merge_size`), a 6x6 learned position table (resampled to every
    grid), DeepStack after blocks `deepstack`."""
    from transformers import Qwen3VLConfig

    return Qwen3VLConfig(
        text_config=dict(
            vocab_size=vocab,
            hidden_size=64,
            intermediate_size=96,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            max_position_embeddings=4096,
            rope_parameters={
                "rope_type": "default",
                "mrope_section": [2, 3, 3],
                "mrope_interleaved": True,
                "rope_theta": 5e6,
            },
            rms_norm_eps=1e-6,
        ),
        vision_config=dict(
            depth=3,
            hidden_size=32,
            intermediate_size=48,
            num_heads=2,
            out_hidden_size=64,
            patch_size=patch_size,
            spatial_merge_size=spatial_merge_size,
            num_position_embeddings=num_position_embeddings,
            deepstack_visual_indexes=list(deepstack),
        ),
        image_token_id=ids["image_token_id"],
        video_token_id=ids["video_token_id"],
        vision_start_token_id=ids["vision_start_token_id"],
        vision_end_token_id=ids["vision_end_token_id"],
        tie_word_embeddings=tie_word_embeddings,
        attn_implementation="eager",
    )


def build_hf_qwen3(config, seed: int = 0):
    """A random transformers Qwen3-VL of `config` with norms, biases and the position table
    perturbed away from their init, so loading them is tested too."""
    import torch
    from transformers import Qwen3VLForConditionalGeneration

    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name or "pos_embed" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model
