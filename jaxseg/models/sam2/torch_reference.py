"""sam2 1.1.0's torch PromptEncoder + MaskDecoder built for a Sam2DecoderConfig: the parity
oracle for tests and bench/bench_sam2_decoder.py. Imports torch and sam2 (not hydra's global
config: the modules are constructed directly, as `SAM2Base._build_sam_heads` does)."""

from __future__ import annotations

from .config import Sam2DecoderConfig


def build_torch_heads(cfg: Sam2DecoderConfig, seed: int = 0, perturb: float = 0.2):
    """torch (PromptEncoder, MaskDecoder) in eval mode with cfg's sizes; every parameter gets
    `perturb` * N(0, 1) added so no LayerNorm is the identity and no bias is zero."""
    import torch
    from sam2.modeling.sam.mask_decoder import MaskDecoder
    from sam2.modeling.sam.prompt_encoder import PromptEncoder
    from sam2.modeling.sam.transformer import TwoWayTransformer

    torch.manual_seed(seed)
    h = cfg.image_embedding_size
    pe = PromptEncoder(
        embed_dim=cfg.transformer_dim,
        image_embedding_size=(h, h),
        input_image_size=(cfg.input_image_size, cfg.input_image_size),
        mask_in_chans=cfg.mask_in_chans,
    )
    md = MaskDecoder(
        num_multimask_outputs=cfg.num_multimask_outputs,
        transformer=TwoWayTransformer(
            depth=cfg.depth,
            embedding_dim=cfg.transformer_dim,
            mlp_dim=cfg.mlp_dim,
            num_heads=cfg.heads,
            attention_downsample_rate=cfg.attention_downsample_rate,
        ),
        transformer_dim=cfg.transformer_dim,
        iou_head_depth=cfg.iou_head_depth,
        iou_head_hidden_dim=cfg.iou_head_hidden_dim,
        use_high_res_features=cfg.use_high_res_features,
        iou_prediction_use_sigmoid=cfg.iou_prediction_use_sigmoid,
        dynamic_multimask_via_stability=cfg.dynamic_multimask_via_stability,
        dynamic_multimask_stability_delta=cfg.dynamic_multimask_stability_delta,
        dynamic_multimask_stability_thresh=cfg.dynamic_multimask_stability_thresh,
        pred_obj_scores=cfg.pred_obj_scores,
        pred_obj_scores_mlp=cfg.pred_obj_scores_mlp,
        use_multimask_token_for_obj_ptr=cfg.use_multimask_token_for_obj_ptr,
    )
    with torch.no_grad():
        for p in [*pe.parameters(), *md.parameters()]:
            p.add_(perturb * torch.randn_like(p))
    return pe.eval(), md.eval()


def torch_state_dict(pe, md) -> dict:
    sd = {f"sam_prompt_encoder.{k}": v for k, v in pe.state_dict().items()}
    sd.update({f"sam_mask_decoder.{k}": v for k, v in md.state_dict().items()})
    return sd
