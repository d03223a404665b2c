"""Qwen3-VL configuration read from a Hugging Face `config.json` (transformers 5 nested layout:
`text_config`, `vision_config`, rope in `text_config.rope_parameters` with `mrope_section` and
`mrope_interleaved`).

Values come from the file; a field the architecture needs but the file lacks raises
`ConfigError` naming the field, except those whose value the architecture fixes (the value
transformers uses when the key is absent, listed in `_VISION_FIXED_DEFAULTS` /
`_TEXT_FIXED_DEFAULTS`).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from jaxseg.models.qwen2_5_vl.config import ConfigError, _require

MODEL_TYPE = "qwen3_vl"

_VISION_FIXED_DEFAULTS: dict[str, Any] = {
    "in_channels": 3,
    "hidden_act": "gelu_pytorch_tanh",
    "rope_theta": 10000.0,  # transformers: vision rope_parameters {"rope_type": "axial", 1e4}
    "deepstack_visual_indexes": (),
}
_TEXT_FIXED_DEFAULTS: dict[str, Any] = {
    "hidden_act": "silu",
    "attention_bias": False,
    "attention_dropout": 0.0,
    "rms_norm_eps": 1e-6,
}


@dataclasses.dataclass(frozen=True)
class VisionConfig:
    """Vision tower hyper-parameters (`vision_config`)."""

    depth: int
    hidden_size: int
    intermediate_size: int
    num_heads: int
    out_hidden_size: int
    patch_size: int
    temporal_patch_size: int
    spatial_merge_size: int
    num_position_embeddings: int
    deepstack_visual_indexes: tuple[int, ...] = ()
    in_channels: int = 3
    hidden_act: str = "gelu_pytorch_tanh"
    rope_theta: float = 10000.0

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def patch_dim(self) -> int:
        """Length of one `pixel_values` row: C * T * P * P."""
        return self.in_channels * self.temporal_patch_size * self.patch_size**2

    @property
    def spatial_merge_unit(self) -> int:
        return self.spatial_merge_size**2

    @property
    def fullatt_block_indexes(self) -> tuple[int, ...]:
        """Every block attends over a whole temporal slice (Qwen3-VL has no window blocks)."""
        return tuple(range(self.depth))

    @property
    def merger_window(self) -> int:
        """No attention windows (kept for the planner's arithmetic, which then counts none)."""
        return 0

    @property
    def num_grid_per_side(self) -> int:
        """Side of the square learned position grid (`num_position_embeddings ** 0.5`)."""
        return int(self.num_position_embeddings**0.5)


@dataclasses.dataclass(frozen=True)
class TextConfig:
    """Qwen3 decoder hyper-parameters (`text_config`)."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    mrope_section: tuple[int, ...]
    max_position_embeddings: int
    mrope_interleaved: bool = True  # kept for round trips; transformers always interleaves
    attention_bias: bool = False
    hidden_act: str = "silu"
    bos_token_id: int | None = None
    eos_token_id: int | tuple[int, ...] | None = None
    pad_token_id: int | None = None


@dataclasses.dataclass(frozen=True)
class Qwen3VLConfig:
    """Whole-model config. Frozen and hashable, so it can be a static jit argument."""

    vision: VisionConfig
    text: TextConfig
    image_token_id: int
    video_token_id: int
    vision_start_token_id: int
    vision_end_token_id: int
    tie_word_embeddings: bool

    model_type = MODEL_TYPE

    @classmethod
    def from_json_file(cls, path: str | Path) -> Qwen3VLConfig:
        """Reads `config.json` (or a directory holding one)."""
        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError as e:
            raise ConfigError(f"{path}: no such file") from e
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: not valid JSON ({e})") from e
        return cls.from_hf_dict(data, source=str(path))

    @classmethod
    def from_hf_dict(cls, data: dict[str, Any], source: str = "<dict>") -> Qwen3VLConfig:
        model_type = data.get("model_type")
        if model_type not in (None, MODEL_TYPE):
            raise ConfigError(f"{source}: model_type is {model_type!r}, expected {MODEL_TYPE!r}")
        for key in ("vision_config", "text_config"):
            if not isinstance(data.get(key), dict):
                raise ConfigError(f"{source}: missing field {key!r} (an object)")
        vision = _vision_from_dict(data["vision_config"], f"{source}: vision_config")
        text = _text_from_dict(data["text_config"], f"{source}: text_config")

        def token_id(name: str) -> int:
            value = data.get(name)
            if value is None:
                raise ConfigError(f"{source}: missing field {name!r}")
            return int(value)

        if vision.out_hidden_size != text.hidden_size:
            raise ConfigError(
                f"{source}: vision_config.out_hidden_size {vision.out_hidden_size} != "
                f"text_config.hidden_size {text.hidden_size}"
            )
        return cls(
            vision=vision,
            text=text,
            image_token_id=token_id("image_token_id"),
            video_token_id=token_id("video_token_id"),
            vision_start_token_id=token_id("vision_start_token_id"),
            vision_end_token_id=token_id("vision_end_token_id"),
            tie_word_embeddings=bool(data.get("tie_word_embeddings", False)),
        )

    def to_hf_dict(self) -> dict[str, Any]:
        """The layout transformers 5.23 writes for `Qwen3VLConfig`."""
        v, t = self.vision, self.text
        eos = list(t.eos_token_id) if isinstance(t.eos_token_id, tuple) else t.eos_token_id
        return {
            "architectures": ["Qwen3VLForConditionalGeneration"],
            "model_type": MODEL_TYPE,
            "text_config": {
                "model_type": "qwen3_vl_text",
                "vocab_size": t.vocab_size,
                "hidden_size": t.hidden_size,
                "intermediate_size": t.intermediate_size,
                "num_hidden_layers": t.num_hidden_layers,
                "num_attention_heads": t.num_attention_heads,
                "num_key_value_heads": t.num_key_value_heads,
                "head_dim": t.head_dim,
                "hidden_act": t.hidden_act,
                "max_position_embeddings": t.max_position_embeddings,
                "rms_norm_eps": t.rms_norm_eps,
                "attention_bias": t.attention_bias,
                "attention_dropout": 0.0,
                "rope_parameters": {
                    "rope_type": "default",
                    "rope_theta": t.rope_theta,
                    "mrope_section": list(t.mrope_section),
                    "mrope_interleaved": t.mrope_interleaved,
                },
                "bos_token_id": t.bos_token_id,
                "eos_token_id": eos,
                "pad_token_id": t.pad_token_id,
            },
            "vision_config": {
                "model_type": "qwen3_vl_vision",
                "depth": v.depth,
                "hidden_size": v.hidden_size,
                "intermediate_size": v.intermediate_size,
                "num_heads": v.num_heads,
                "in_channels": v.in_channels,
                "out_hidden_size": v.out_hidden_size,
                "patch_size": v.patch_size,
                "temporal_patch_size": v.temporal_patch_size,
                "spatial_merge_size": v.spatial_merge_size,
                "num_position_embeddings": v.num_position_embeddings,
                "deepstack_visual_indexes": list(v.deepstack_visual_indexes),
                "hidden_act": v.hidden_act,
                "rope_parameters": {"rope_type": "axial", "rope_theta": v.rope_theta},
            },
            "image_token_id": self.image_token_id,
            "video_token_id": self.video_token_id,
            "vision_start_token_id": self.vision_start_token_id,
            "vision_end_token_id": self.vision_end_token_id,
            "tie_word_embeddings": self.tie_word_embeddings,
        }


def _vision_from_dict(d: dict[str, Any], source: str) -> VisionConfig:
    rope = d.get("rope_parameters") or {}
    if rope.get("rope_type", "axial") != "axial":
        raise ConfigError(f"{source}: rope_parameters.rope_type must be 'axial'")
    hidden_act = d.get("hidden_act", _VISION_FIXED_DEFAULTS["hidden_act"])
    if hidden_act != "gelu_pytorch_tanh":
        raise ConfigError(f"{source}: hidden_act {hidden_act!r} not supported")
    cfg = VisionConfig(
        depth=int(_require(d, "depth", source, ("num_hidden_layers",))),
        hidden_size=int(_require(d, "hidden_size", source)),
        intermediate_size=int(_require(d, "intermediate_size", source)),
        num_heads=int(_require(d, "num_heads", source, ("num_attention_heads",))),
        out_hidden_size=int(_require(d, "out_hidden_size", source)),
        patch_size=int(_require(d, "patch_size", source)),
        temporal_patch_size=int(_require(d, "temporal_patch_size", source)),
        spatial_merge_size=int(_require(d, "spatial_merge_size", source)),
        num_position_embeddings=int(_require(d, "num_position_embeddings", source)),
        deepstack_visual_indexes=tuple(int(i) for i in d.get("deepstack_visual_indexes", ()) or ()),
        in_channels=int(d.get("in_channels", 3)),
        hidden_act=hidden_act,
        rope_theta=float(rope.get("rope_theta", _VISION_FIXED_DEFAULTS["rope_theta"])),
    )
    if cfg.hidden_size % cfg.num_heads:
        raise ConfigError(f"{source}: hidden_size {cfg.hidden_size} not divisible by num_heads")
    if cfg.num_grid_per_side**2 != cfg.num_position_embeddings:
        raise ConfigError(
            f"{source}: num_position_embeddings {cfg.num_position_embeddings} is not a square"
        )
    bad = [i for i in cfg.deepstack_visual_indexes if not 0 <= i < cfg.depth]
    if bad:
        raise ConfigError(f"{source}: deepstack_visual_indexes {bad} outside [0, {cfg.depth})")
    return cfg


def _text_from_dict(d: dict[str, Any], source: str) -> TextConfig:
    rope = d.get("rope_parameters") or d.get("rope_scaling") or {}
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        raise ConfigError(f"{source}: rope type {rope.get('rope_type')!r} not supported")
    if "mrope_section" not in rope:
        raise ConfigError(f"{source}: missing field 'rope_parameters.mrope_section'")
    theta = rope.get("rope_theta", d.get("rope_theta"))
    if theta is None:
        raise ConfigError(f"{source}: missing field 'rope_parameters.rope_theta'")
    hidden_act = d.get("hidden_act", _TEXT_FIXED_DEFAULTS["hidden_act"])
    if hidden_act != "silu":
        raise ConfigError(f"{source}: hidden_act {hidden_act!r} not supported (only 'silu')")
    n_heads = int(_require(d, "num_attention_heads", source))
    hidden = int(_require(d, "hidden_size", source))
    eos = d.get("eos_token_id")
    cfg = TextConfig(
        vocab_size=int(_require(d, "vocab_size", source)),
        hidden_size=hidden,
        intermediate_size=int(_require(d, "intermediate_size", source)),
        num_hidden_layers=int(_require(d, "num_hidden_layers", source)),
        num_attention_heads=n_heads,
        num_key_value_heads=int(d.get("num_key_value_heads") or n_heads),
        head_dim=int(d.get("head_dim") or hidden // n_heads),
        rms_norm_eps=float(d.get("rms_norm_eps", _TEXT_FIXED_DEFAULTS["rms_norm_eps"])),
        rope_theta=float(theta),
        mrope_section=tuple(int(s) for s in rope["mrope_section"]),
        mrope_interleaved=bool(rope.get("mrope_interleaved", True)),
        max_position_embeddings=int(_require(d, "max_position_embeddings", source)),
        attention_bias=bool(d.get("attention_bias", False)),
        hidden_act=hidden_act,
        bos_token_id=d.get("bos_token_id"),
        eos_token_id=tuple(eos) if isinstance(eos, list) else eos,
        pad_token_id=d.get("pad_token_id"),
    )
    if cfg.num_attention_heads % cfg.num_key_value_heads:
        raise ConfigError(f"{source}: num_attention_heads not divisible by num_key_value_heads")
    if 2 * sum(cfg.mrope_section) != cfg.head_dim:
        raise ConfigError(
            f"{source}: mrope_section {list(cfg.mrope_section)} must sum to head_dim/2 = "
            f"{cfg.head_dim // 2}"
        )
    return cfg
