"""SAM2's prompt encoder + mask decoder in Flax nnx (numerically sam2 1.1.0's torch modules).

The image encoder stays frozen in the PyTorch sidecar; this package is the trainable head the
[SEG] embedding is decoded with (Sa2VA / VideoSEG-O3, arXiv 2606.06819 ([SEG] decoding)).

    from jaxseg.models.sam2 import SAM2MaskDecoderModule, preset, load_torch_weights
    cfg = preset("tiny")                       # C=32 toy; "hiera_tiny"/"hiera_large"(image_size=...)
    heads = SAM2MaskDecoderModule(cfg, nnx.Rngs(0))
    load_torch_weights(heads, "sam2_hiera_large.pt")   # or a torch state_dict; strict
    heads = from_torch_weights(cfg, "sam2_hiera_large.pt")  # same, without the random init
    low_res, iou, obj = heads(
        image_embed,        # [B, C, h, w]  (sidecar image_features: no_mem_embed already added)
        high_res_feats,     # [[B, C/8, 4h, 4w], [B, C/4, 2h, 2w]] (conv_s0/conv_s1 applied)
        extra_tokens=seg,   # [B, K, C] appended after the prompt tokens, or None
        points=None,        # (coords [B, P, 2] pixel x,y of the SAM2 input, labels [B, P])
        boxes=None,         # [B, 4] pixels
        mask_input=None,    # [B, 1, 4h, 4w] logits
        multimask=False,
    )                       # -> low_res [B, M, 4h, 4w] logits, iou [B, M], obj [B, 1]
    heads.decode(...)       # same inputs -> DecoderOutput(masks, iou, sam_tokens, object_score_logits)
    apply_object_score(low_res, obj)   # sam2's -1024 where the object score is <= 0
    upscale_logits(low_res, (S, S))    # bilinear, = _forward_sam_heads' high_res_masks

With no points and no boxes the sparse prompt is sam2's `_forward_sam_heads` one (two
not-a-point tokens), so `extra_tokens=[SEG]` reproduces Sa2VA's `inject_language_embd` input.
Inputs are channel-first like torch; computation is channel-last inside. All pure functions of
(params, inputs): use under `nnx.jit` / `nnx.grad` or split with `nnx.split`; `multimask` and
`stability_selection` are Python bools (static under jit). Dynamic multimask via stability
(cfg.dynamic_multimask_via_stability, on in the released presets) is what torch does in eval
mode; a training step that should match a torch module in train mode passes
stability_selection=False. Parameters are float32; bf16 inputs are promoted.

Matching the sidecar: its CI-sized SAM2 `Sam2Config(model="tiny")` (random hiera-t, image_size
256; any multiple of 16 >= 64 works, 128 is faster) has the decoder of
`preset("hiera_tiny", image_size=<same>)`, and `SidecarClient.decoder_state_dict()` hands over
its weights:

    client = SidecarClient(SidecarConfig(backend="sam2", backend_config={"model": "tiny"}))
    heads = from_torch_weights(preset("hiera_tiny", image_size=256), client.decoder_state_dict())
    feats = client.image_features(client.register_video(frames), [keyframe])
    low_res, iou, obj = heads(jnp.asarray(feats.image_embed),
                              [jnp.asarray(x) for x in feats.high_res_feats], extra_tokens=seg)

From jitted code use `jaxseg.segmenter.jax_bridge.FeatureBridge` (features) and
`MaskBridge.propagate_masks` (a decoded keyframe mask propagated by SAM2's video predictor).
"""

from .config import (
    PRESETS,
    Sam2ConfigError,
    Sam2DecoderConfig,
    hiera_large,
    hiera_tiny,
    preset,
    tiny,
)
from .mask_decoder import DecoderOutput, MaskDecoder
from .model import NO_OBJ_SCORE, SAM2MaskDecoderModule, apply_object_score, upscale_logits
from .prompt_encoder import PromptEncoder
from .weights import (
    WeightsError,
    export_torch_state_dict,
    from_torch_weights,
    load_torch_weights,
    read_checkpoint,
    save_torch_checkpoint,
)

__all__ = [
    "NO_OBJ_SCORE",
    "PRESETS",
    "DecoderOutput",
    "MaskDecoder",
    "PromptEncoder",
    "SAM2MaskDecoderModule",
    "Sam2ConfigError",
    "Sam2DecoderConfig",
    "WeightsError",
    "apply_object_score",
    "export_torch_state_dict",
    "from_torch_weights",
    "hiera_large",
    "hiera_tiny",
    "load_torch_weights",
    "preset",
    "read_checkpoint",
    "save_torch_checkpoint",
    "tiny",
    "upscale_logits",
]
