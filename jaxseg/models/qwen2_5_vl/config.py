"""Qwen2.5-VL configuration read from a Hugging Face `config.json`.

Values are always taken from the file (never from transformers' class defaults, which differ from
the released checkpoints: e.g. vision `tokens_per_second` defaults to 4 but the checkpoints use 2,
text `rms_norm_eps` defaults to 1e-5 but the checkpoints use 1e-6).

Two layouts are accepted:

* flat (released checkpoints, transformers 4.x): text fields at the top level, `vision_config`
  nested, `rope_scaling = {"type": "mrope", "mrope_section": [...]}`, `rope_theta` top level;
* nested (transformers 5.x `save_pretrained`): `text_config` and `vision_config` dicts, rope in
  `text_config.rope_parameters = {"rope_type": "default", "mrope_section": ..., "rope_theta": ...}`.

A field the architecture needs but the file lacks raises `ConfigError` naming the field, except
the few with a value fixed by the architecture itself (listed in `_VISION_FIXED_DEFAULTS` and
`_TEXT_FIXED_DEFAULTS`, each the value transformers uses when the key is absent).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A config.json that cannot describe a Qwen2.5-VL model (names the file and field)."""


# Keys that released configs may omit; the value is what transformers assumes for them.
_VISION_FIXED_DEFAULTS: dict[str, Any] = {
    "in_channels": 3,
    "hidden_act": "silu",
    "rope_theta": 10000.0,  # transformers: vision rope_parameters {"rope_type": "axial", "rope_theta": 1e4}
}
_TEXT_FIXED_DEFAULTS: dict[str, Any] = {
    "hidden_act": "silu",
    "use_sliding_window": False,
    "attention_dropout": 0.0,
    "bos_token_id": None,
    "eos_token_id": None,
    "pad_token_id": None,
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
    window_size: int
    fullatt_block_indexes: tuple[int, ...]
    tokens_per_second: float
    in_channels: int = 3
    hidden_act: str = "silu"
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
    def merger_window(self) -> int:
        """Side of an attention window in merged tokens (112 // 2 // 14 = 4 for the released models)."""
        return self.window_size // self.spatial_merge_size // self.patch_size


@dataclasses.dataclass(frozen=True)
class TextConfig:
    """Language-model hyper-parameters (`text_config` or the flat top level)."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    rms_norm_eps: float
    rope_theta: float
    mrope_section: tuple[int, ...]
    max_position_embeddings: int
    hidden_act: str = "silu"
    bos_token_id: int | None = None
    eos_token_id: int | tuple[int, ...] | None = None
    pad_token_id: int | None = None

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


@dataclasses.dataclass(frozen=True)
class Qwen2_5_VLConfig:
    """Whole-model config. Frozen and hashable, so it can be a static jit argument."""

    vision: VisionConfig
    text: TextConfig
    image_token_id: int
    video_token_id: int
    vision_start_token_id: int
    vision_end_token_id: int
    tie_word_embeddings: bool

    model_type = "qwen2_5_vl"  # the family key (HF config.json "model_type")

    # ------------------------------------------------------------------ reading
    @classmethod
    def from_json_file(cls, path: str | Path) -> Qwen2_5_VLConfig:
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
    def from_hf_dict(cls, data: dict[str, Any], source: str = "<dict>") -> Qwen2_5_VLConfig:
        """Builds the config from a parsed HF config dict, flat or nested layout."""
        model_type = data.get("model_type")
        if model_type not in (None, "qwen2_5_vl"):
            raise ConfigError(f"{source}: model_type is {model_type!r}, expected 'qwen2_5_vl'")
        if "vision_config" not in data:
            raise ConfigError(f"{source}: missing field 'vision_config'")
        vision = _vision_from_dict(data["vision_config"], f"{source}: vision_config")
        nested = isinstance(data.get("text_config"), dict)
        text_dict = data["text_config"] if nested else data
        text_source = f"{source}: text_config" if nested else source
        text = _text_from_dict(text_dict, data, text_source)

        # transformers 5.x reads the root value, and forwards a pre-v5 text_config value when the
        # root one is absent/false (configuration_qwen2_5_vl.py, __post_init__).
        tie = bool(data.get("tie_word_embeddings", False))
        if not tie and nested:
            tie = bool(text_dict.get("tie_word_embeddings", False))

        def token_id(name: str) -> int:
            value = data.get(name, text_dict.get(name) if nested else None)
            if value is None:
                raise ConfigError(f"{source}: missing field {name!r}")
            return int(value)

        return cls(
            vision=vision,
            text=text,
            image_token_id=token_id("image_token_id"),
            video_token_id=token_id("video_token_id"),
            vision_start_token_id=token_id("vision_start_token_id"),
            vision_end_token_id=token_id("vision_end_token_id"),
            tie_word_embeddings=tie,
        )

    # ------------------------------------------------------------------ writing
    def to_hf_dict(self) -> dict[str, Any]:
        """The nested transformers-5.x layout (what transformers 5.23 itself writes)."""
        v, t = self.vision, self.text
        text_config = {
            "model_type": "qwen2_5_vl_text",
            "vocab_size": t.vocab_size,
            "hidden_size": t.hidden_size,
            "intermediate_size": t.intermediate_size,
            "num_hidden_layers": t.num_hidden_layers,
            "num_attention_heads": t.num_attention_heads,
            "num_key_value_heads": t.num_key_value_heads,
            "hidden_act": t.hidden_act,
            "max_position_embeddings": t.max_position_embeddings,
            "rms_norm_eps": t.rms_norm_eps,
            "use_sliding_window": False,
            "attention_dropout": 0.0,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": t.rope_theta,
                "mrope_section": list(t.mrope_section),
            },
            "bos_token_id": t.bos_token_id,
            "eos_token_id": list(t.eos_token_id)
            if isinstance(t.eos_token_id, tuple)
            else t.eos_token_id,
            "pad_token_id": t.pad_token_id,
        }
        vision_config = {
            "model_type": "qwen2_5_vl_vision",
            "depth": v.depth,
            "hidden_size": v.hidden_size,
            "intermediate_size": v.intermediate_size,
            "num_heads": v.num_heads,
            "in_channels": v.in_channels,
            "out_hidden_size": v.out_hidden_size,
            "patch_size": v.patch_size,
            "temporal_patch_size": v.temporal_patch_size,
            "spatial_merge_size": v.spatial_merge_size,
            "window_size": v.window_size,
            "fullatt_block_indexes": list(v.fullatt_block_indexes),
            "tokens_per_second": v.tokens_per_second,
            "hidden_act": v.hidden_act,
            "rope_parameters": {"rope_type": "axial", "rope_theta": v.rope_theta},
        }
        return {
            "architectures": ["Qwen2_5_VLForConditionalGeneration"],
            "model_type": "qwen2_5_vl",
            "text_config": text_config,
            "vision_config": vision_config,
            "image_token_id": self.image_token_id,
            "video_token_id": self.video_token_id,
            "vision_start_token_id": self.vision_start_token_id,
            "vision_end_token_id": self.vision_end_token_id,
            "tie_word_embeddings": self.tie_word_embeddings,
        }


def _require(d: dict[str, Any], key: str, source: str, aliases: tuple[str, ...] = ()) -> Any:
    for name in (key, *aliases):
        if name in d and d[name] is not None:
            return d[name]
    raise ConfigError(f"{source}: missing field {key!r}")


def _vision_from_dict(d: dict[str, Any], source: str) -> VisionConfig:
    if not isinstance(d, dict):
        raise ConfigError(f"{source}: expected an object, got {type(d).__name__}")
    rope = d.get("rope_parameters") or {}
    rope_theta = rope.get("rope_theta", d.get("rope_theta", _VISION_FIXED_DEFAULTS["rope_theta"]))
    if rope.get("rope_type", "axial") != "axial":
        raise ConfigError(f"{source}: rope_parameters.rope_type must be 'axial'")
    hidden_act = d.get("hidden_act", _VISION_FIXED_DEFAULTS["hidden_act"])
    if hidden_act != "silu":
        raise ConfigError(f"{source}: hidden_act {hidden_act!r} not supported (only 'silu')")
    cfg = VisionConfig(
        depth=int(_require(d, "depth", source, ("num_hidden_layers",))),
        hidden_size=int(_require(d, "hidden_size", source, ("embed_dim",))),
        intermediate_size=int(_require(d, "intermediate_size", source)),
        num_heads=int(_require(d, "num_heads", source, ("num_attention_heads",))),
        out_hidden_size=int(_require(d, "out_hidden_size", source)),
        patch_size=int(_require(d, "patch_size", source, ("spatial_patch_size",))),
        temporal_patch_size=int(_require(d, "temporal_patch_size", source)),
        spatial_merge_size=int(_require(d, "spatial_merge_size", source)),
        window_size=int(_require(d, "window_size", source)),
        fullatt_block_indexes=tuple(int(i) for i in _require(d, "fullatt_block_indexes", source)),
        tokens_per_second=_require(d, "tokens_per_second", source),
        in_channels=int(d.get("in_channels", d.get("in_chans", 3))),
        hidden_act=hidden_act,
        rope_theta=float(rope_theta),
    )
    if cfg.hidden_size % cfg.num_heads:
        raise ConfigError(f"{source}: hidden_size {cfg.hidden_size} not divisible by num_heads")
    if cfg.merger_window < 1:
        raise ConfigError(f"{source}: window_size {cfg.window_size} smaller than one merged token")
    bad = [i for i in cfg.fullatt_block_indexes if not 0 <= i < cfg.depth]
    if bad:
        raise ConfigError(f"{source}: fullatt_block_indexes {bad} outside [0, depth={cfg.depth})")
    return cfg


def _text_from_dict(d: dict[str, Any], root: dict[str, Any], source: str) -> TextConfig:
    rope = d.get("rope_parameters") or d.get("rope_scaling") or root.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type not in ("default", "mrope"):
        raise ConfigError(f"{source}: rope type {rope_type!r} not supported (only default/mrope)")
    if "mrope_section" not in rope:
        raise ConfigError(
            f"{source}: missing field 'mrope_section' (in rope_scaling/rope_parameters)"
        )
    rope_theta = rope.get("rope_theta", d.get("rope_theta", root.get("rope_theta")))
    if rope_theta is None:
        raise ConfigError(f"{source}: missing field 'rope_theta'")
    if d.get("use_sliding_window", False):
        raise ConfigError(f"{source}: use_sliding_window=true is not supported")
    hidden_act = d.get("hidden_act", _TEXT_FIXED_DEFAULTS["hidden_act"])
    if hidden_act != "silu":
        raise ConfigError(f"{source}: hidden_act {hidden_act!r} not supported (only 'silu')")
    n_heads = int(_require(d, "num_attention_heads", source))
    eos = d.get("eos_token_id")
    cfg = TextConfig(
        vocab_size=int(_require(d, "vocab_size", source)),
        hidden_size=int(_require(d, "hidden_size", source)),
        intermediate_size=int(_require(d, "intermediate_size", source)),
        num_hidden_layers=int(_require(d, "num_hidden_layers", source)),
        num_attention_heads=n_heads,
        num_key_value_heads=int(d.get("num_key_value_heads") or n_heads),
        rms_norm_eps=float(_require(d, "rms_norm_eps", source)),
        rope_theta=float(rope_theta),
        mrope_section=tuple(int(s) for s in rope["mrope_section"]),
        max_position_embeddings=int(_require(d, "max_position_embeddings", source)),
        hidden_act=hidden_act,
        bos_token_id=d.get("bos_token_id"),
        eos_token_id=tuple(eos) if isinstance(eos, list) else eos,
        pad_token_id=d.get("pad_token_id"),
    )
    if cfg.hidden_size % cfg.num_attention_heads:
        raise ConfigError(f"{source}: hidden_size not divisible by num_attention_heads")
    if cfg.num_attention_heads % cfg.num_key_value_heads:
        raise ConfigError(f"{source}: num_attention_heads not divisible by num_key_value_heads")
    if 2 * sum(cfg.mrope_section) != cfg.head_dim:
        raise ConfigError(
            f"{source}: mrope_section {list(cfg.mrope_section)} must sum to head_dim/2 = "
            f"{cfg.head_dim // 2}"
        )
    return cfg
