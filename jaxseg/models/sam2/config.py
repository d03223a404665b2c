"""Hyper-parameters of SAM2's prompt encoder + mask decoder (the "SAM heads").

The values of a released model come from two places in sam2 1.1.0:
- `sam2/modeling/sam2_base.py::_build_sam_heads` fixes the decoder shape for every SAM2 size
  (transformer depth 2, 8 heads, mlp 2048, 3 multimask outputs, iou head 3 x 256,
  `mask_in_chans=16`, transformer_dim = the neck's d_model = 256, embedding = image_size / 16);
- the yaml (`configs/sam2{,.1}/*_hiera_*.yaml`) sets the flags (high-res features, object-score
  head, sigmoid IoU, multimask token for the object pointer), identical for t/s/b+/l, and
  `build_sam2(apply_postprocessing=True)` adds dynamic multimask via stability (0.05, 0.98).

So `hiera_tiny` and `hiera_large` have the same decoder; both exist so a caller can say which
checkpoint it means. `tiny` is a random-weight toy for tests and synthetic runs.
"""

from __future__ import annotations

import dataclasses


class Sam2ConfigError(ValueError):
    """An inconsistent SAM2 decoder config (names the field)."""


@dataclasses.dataclass(frozen=True)
class Sam2DecoderConfig:
    """SAM2 prompt encoder + mask decoder.

    transformer_dim: C, channels of image_embed and of every prompt token.
    image_embedding_size: h = w of image_embed (image_size / 16).
    input_image_size: pixel size the point/box coordinates refer to (SAM2's image_size).
    mask_in_chans: hidden channels of the dense mask-prompt encoder.
    attention_downsample_rate: cross-attention internal dim = C / rate (sam2: 2).
    dynamic_multimask_via_stability: torch applies it only in eval mode, single-mask output.
    """

    transformer_dim: int = 256
    depth: int = 2
    heads: int = 8
    mlp_dim: int = 2048
    attention_downsample_rate: int = 2
    num_multimask_outputs: int = 3
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256
    use_high_res_features: bool = True
    pred_obj_scores: bool = True
    pred_obj_scores_mlp: bool = True
    use_multimask_token_for_obj_ptr: bool = True
    iou_prediction_use_sigmoid: bool = True
    dynamic_multimask_via_stability: bool = True
    dynamic_multimask_stability_delta: float = 0.05
    dynamic_multimask_stability_thresh: float = 0.98
    image_embedding_size: int = 64
    input_image_size: int = 1024
    mask_in_chans: int = 16

    def __post_init__(self) -> None:
        c = self.transformer_dim
        if c % 8:
            raise Sam2ConfigError(f"transformer_dim: {c} is not a multiple of 8 (C/8 upscaling)")
        internal = c // self.attention_downsample_rate
        if c % self.heads or internal % self.heads:
            raise Sam2ConfigError(
                f"heads: {self.heads} does not divide transformer_dim {c} and the "
                f"cross-attention dim {internal}"
            )
        if self.mask_in_chans % 4:
            raise Sam2ConfigError(f"mask_in_chans: {self.mask_in_chans} is not a multiple of 4")
        for name in ("depth", "mlp_dim", "num_multimask_outputs", "image_embedding_size"):
            if getattr(self, name) < 1:
                raise Sam2ConfigError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if self.iou_head_depth < 1:
            raise Sam2ConfigError(f"iou_head_depth: must be >= 1, got {self.iou_head_depth}")

    @property
    def num_mask_tokens(self) -> int:
        return self.num_multimask_outputs + 1

    @property
    def mask_input_size(self) -> int:
        """Side of the dense mask prompt (and of the low-res output masks): 4 * h."""
        return 4 * self.image_embedding_size

    @property
    def high_res_shapes(self) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        """[C, H, W] of the two high-res maps: (C/8, 4h, 4w) and (C/4, 2h, 2w)."""
        c, h = self.transformer_dim, self.image_embedding_size
        return (c // 8, 4 * h, 4 * h), (c // 4, 2 * h, 2 * h)


def _released(image_size: int) -> Sam2DecoderConfig:
    if image_size % 16:
        raise Sam2ConfigError(f"image_size: {image_size} is not a multiple of 16")
    return Sam2DecoderConfig(image_embedding_size=image_size // 16, input_image_size=image_size)


def hiera_tiny(image_size: int = 1024) -> Sam2DecoderConfig:
    """Decoder of sam2(.1)_hiera_t. image_size=256 is the sidecar's CI model (`model="tiny"`)."""
    return _released(image_size)


def hiera_large(image_size: int = 1024) -> Sam2DecoderConfig:
    """Decoder of sam2(.1)_hiera_l (VideoSEG-O3 / Sa2VA use sam2_hiera_large.pt)."""
    return _released(image_size)


def tiny() -> Sam2DecoderConfig:
    """Random-weight toy: C=32, 2 layers, 2 heads, 16x16 embedding for a 256 px image."""
    return Sam2DecoderConfig(
        transformer_dim=32,
        depth=2,
        heads=2,
        mlp_dim=64,
        iou_head_hidden_dim=32,
        image_embedding_size=16,
        input_image_size=256,
        mask_in_chans=16,
    )


PRESETS = {"tiny": tiny, "hiera_tiny": hiera_tiny, "hiera_large": hiera_large}


def preset(name: str, **kwargs) -> Sam2DecoderConfig:
    if name not in PRESETS:
        raise Sam2ConfigError(f"preset: {name!r} is not one of {sorted(PRESETS)}")
    return PRESETS[name](**kwargs)
