"""The policy-family seam: everything outside `jaxseg/models/<family>/` reaches a model through
here, so `model.family = "qwen2_5_vl" | "qwen3_vl"` switches every command.

Two halves:

* the **model** (traced): every family's model class keeps one interface,

      out, cache = model.forward(input_ids, attention_mask, position_ids, *,
                                 pixel_values=None, image_layout=None,
                                 pixel_values_videos=None, video_layout=None,
                                 kv_cache=None, return_hidden=False)
      cache = model.init_cache(batch, length)
      logits = model.compute_logits(hidden)

  Teacher-forced passes, prefill and decode steps are all `forward` (a decode step is tokens
  with no pixels and a cache). "Embed, then decode" cannot be the contract: Qwen3-VL's
  DeepStack adds visual features inside the first decoder layers.
* the **family** (host, never traced): config parsing, presets, weights in/out, the host
  encoder's family-specific pieces (M-RoPE positions, the vision layout; `encode_media` pads
  a batch's pixels and lays them out, jaxseg.models.inputs) and the image-processor settings
  of its synthetic processor. One registry keyed on the HF `model_type` (as sglang-jax keys
  on the HF architecture); callers never branch on the family name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax.numpy as jnp
from flax import nnx

from .hf_weights import WeightTable

# A family's config (`Qwen2_5_VLConfig`, `Qwen3VLConfig`: frozen, with `.model_type`, `.text`,
# `.vision` and the placeholder ids) and its vision tower's host layout pytree.
PolicyConfig = Any
VisionLayout = Any


@dataclasses.dataclass(frozen=True)
class PolicyFamily:
    """Host-side description of one model family.

    name: the HF `model_type`; architecture: the transformers class name in config.json.
    get_rope_index(input_ids, image_grid_thw, video_grid_thw, second_per_grid_ts,
    attention_mask, *, config) -> (positions [3, B, L], deltas [B, 1]).
    vision_layout(grid_thw, vision_config, pad_to=None) -> the tower's VisionLayout.
    preset(size, *, vocab_size, image_token_id, ...) -> config.
    image_processor: patch_size, image_mean, image_std of its processor.
    video_runs_per_grid: how many placeholder runs one video grid row `(t, h, w)` makes in the
    prompt (Qwen2.5-VL: one; Qwen3-VL: one per temporal patch, each behind its timestamp)."""

    name: str
    architecture: str
    config_cls: type
    model_cls: type
    weight_table: WeightTable
    get_rope_index: Callable[..., Any]
    vision_layout: Callable[..., Any]
    preset: Callable[..., Any]
    sizes: tuple[str, ...]
    image_processor: dict[str, Any]
    load: Callable[..., nnx.Module]  # the family's weights.from_pretrained
    save: Callable[..., Any]  # the family's weights.save_pretrained
    video_runs_per_grid: Callable[[Any], int] = lambda grid: 1
    # re-initialise a learned vision position table in place (model, scheme); None: the
    # family has none (Qwen2.5-VL's tower has only rotary positions)
    init_position_table: Callable[..., None] | None = None

    def config_from_json(self, path: str | Path):
        return self.config_cls.from_json_file(path)

    def build(
        self,
        config,
        *,
        dtype=jnp.float32,
        param_dtype=jnp.float32,
        rngs: nnx.Rngs | None = None,
        remat: str = "none",
    ) -> nnx.Module:
        return self.model_cls(config, dtype=dtype, param_dtype=param_dtype, rngs=rngs, remat=remat)

    def from_pretrained(self, directory, **kw) -> nnx.Module:
        """`dtype`, `param_dtype`, `mesh`, `rules` as the family's `weights.from_pretrained`."""
        return self.load(directory, **kw)

    def save_pretrained(self, model, out_dir, reference_dir=None, **kw):
        return self.save(model, out_dir, reference_dir, **kw)

    def encode_media(self, rows, config, kind: str = "image", *, patch_buckets=None):
        """(pixel_values `[P, patch_dim]`, VisionLayout) of the rows' images / videos, padded
        to a bucketed patch count P (jaxseg.models.inputs.encode_media)."""
        from .inputs import encode_media

        return encode_media(self, rows, config, kind, patch_buckets=patch_buckets)


def _qwen2_5_vl() -> PolicyFamily:
    from . import qwen2_5_vl as m
    from .qwen2_5_vl.presets import SIZES, preset_config

    return PolicyFamily(
        name="qwen2_5_vl",
        architecture="Qwen2_5_VLForConditionalGeneration",
        config_cls=m.Qwen2_5_VLConfig,
        model_cls=m.Qwen2_5_VLForConditionalGeneration,
        weight_table=m.weights.WEIGHT_TABLE,
        load=m.from_pretrained,
        save=m.save_pretrained,
        get_rope_index=m.get_rope_index,
        vision_layout=m.vision_layout,
        preset=preset_config,
        sizes=tuple(SIZES),
        image_processor={
            "patch_size": 14,
            "image_mean": [0.48145466, 0.4578275, 0.40821073],
            "image_std": [0.26862954, 0.26130258, 0.27577711],
            "processor_class": "Qwen2_5_VLProcessor",
            "video_processor_type": "Qwen2VLVideoProcessor",
        },
    )


def _qwen3_vl() -> PolicyFamily:
    from . import qwen3_vl as m
    from .qwen3_vl.presets import SIZES, preset_config
    from .qwen3_vl.vision import init_position_table

    return PolicyFamily(
        name="qwen3_vl",
        architecture="Qwen3VLForConditionalGeneration",
        config_cls=m.Qwen3VLConfig,
        model_cls=m.Qwen3VLForConditionalGeneration,
        weight_table=m.WEIGHT_TABLE,
        load=m.from_pretrained,
        save=m.save_pretrained,
        get_rope_index=m.get_rope_index,
        vision_layout=m.vision_layout,
        preset=preset_config,
        sizes=tuple(SIZES),
        image_processor={
            "patch_size": 16,
            "image_mean": [0.5, 0.5, 0.5],
            "image_std": [0.5, 0.5, 0.5],
            "processor_class": "Qwen3VLProcessor",
            "video_processor_type": "Qwen3VLVideoProcessor",
        },
        video_runs_per_grid=lambda grid: int(grid[0]),
        init_position_table=init_position_table,
    )


_REGISTRY: dict[str, Callable[[], PolicyFamily]] = {
    "qwen2_5_vl": _qwen2_5_vl,
    "qwen3_vl": _qwen3_vl,
}
_CACHE: dict[str, PolicyFamily] = {}

FAMILY_NAMES: tuple[str, ...] = tuple(_REGISTRY)


def with_overrides(config: Any, *, vision=None, text=None) -> Any:
    """`config` (a family's whole-model config) with the named fields of its vision tower and
    language model replaced, e.g. ``vision={"depth": 4, "intermediate_size": 1024}`` on a
    preset; a ValueError naming ``model.vision.<field>`` for a field the tower lacks."""
    parts = {}
    for part, overrides in (("vision", vision), ("text", text)):
        if not overrides:
            continue
        sub = getattr(config, part)
        names = {f.name for f in dataclasses.fields(sub)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ValueError(
                f"model.{part}.{unknown[0]}: {type(sub).__name__} has no such field; "
                f"choose among {', '.join(sorted(names))}"
            )
        fields = {k: tuple(v) if isinstance(v, list) else v for k, v in dict(overrides).items()}
        parts[part] = dataclasses.replace(sub, **fields)
    return dataclasses.replace(config, **parts) if parts else config


def get_family(name: str) -> PolicyFamily:
    """The family registered under `name` (an HF model_type); a ValueError with the choices and
    the closest match otherwise."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), FAMILY_NAMES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"unknown model family {name!r}{hint}; choose one of {', '.join(FAMILY_NAMES)}"
        )
    if name not in _CACHE:
        _CACHE[name] = _REGISTRY[name]()
    return _CACHE[name]


def family_of(config_or_model: Any) -> PolicyFamily:
    """The family of a model or a model config (its `model_type`)."""
    config = getattr(config_or_model, "config", config_or_model)
    return get_family(config.model_type)


def family_of_processor_class(processor_class: str | None) -> PolicyFamily:
    """The family whose processor class is `processor_class` (a saved processor_config.json's);
    Qwen2.5-VL for an unknown or missing class (the processors of older runs)."""
    for name in FAMILY_NAMES:
        if get_family(name).image_processor["processor_class"] == processor_class:
            return get_family(name)
    return get_family("qwen2_5_vl")


def family_of_checkpoint(directory: str | Path) -> PolicyFamily:
    """The family of an HF checkpoint directory, from config.json's `model_type`."""
    path = Path(directory) / "config.json"
    try:
        model_type = json.loads(path.read_text()).get("model_type")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist: not an HF checkpoint") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if model_type is None:
        raise ValueError(f"{path}: missing field 'model_type'")
    return get_family(model_type)


def shipped_base(name: str = "qwen3_vl_tiny") -> Path:
    """The directory of a base checkpoint shipped inside the package (`jaxseg/assets/<name>`,
    built by `make base`): HF safetensors + config + processor, loadable by transformers."""
    path = Path(__file__).resolve().parent.parent / "assets" / name
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"{path}: no shipped base {name!r} (build it with `make base`, or use "
            "model.init=random)"
        )
    return path


def load_pretrained(directory: str | Path, **kw) -> nnx.Module:
    """Any family's HF checkpoint (config.json + safetensors); `dtype`, `param_dtype`, `mesh`."""
    return family_of_checkpoint(directory).from_pretrained(directory, **kw)


def save_pretrained(model, out_dir, reference_dir=None, **kw):
    """Writes `model` as an HF checkpoint of its family (transformers loads it)."""
    return family_of(model).save_pretrained(model, out_dir, reference_dir, **kw)


def redraw_with_transformers(model, seed: int, **kw) -> nnx.Module:
    """`model`'s architecture with fresh random weights drawn by transformers' own initialiser
    (`torch.manual_seed(seed)`, then the HF class's constructor runs its `_init_weights`),
    brought in through the HF checkpoint path. Same distributions as our own initialiser
    (normal(initializer_range) matrices and embeddings, zero biases, unit norms); a second,
    independent draw for runs whose start matters (a from-scratch base crossing the location
    plateau, README). `dtype`, `param_dtype` as `load_pretrained`. Needs torch."""
    import tempfile

    import torch
    import transformers

    with tempfile.TemporaryDirectory(prefix="jaxseg_redraw_") as tmp:
        ours, theirs = Path(tmp) / "ours", Path(tmp) / "theirs"
        save_pretrained(model, ours)  # config.json: the architecture, as transformers reads it
        config = transformers.AutoConfig.from_pretrained(ours)
        torch.manual_seed(seed)
        hf_model = getattr(transformers, config.architectures[0])(config)
        hf_model.save_pretrained(theirs)
        for name in ("tokenizer.json", "tokenizer_config.json"):  # nothing else is needed
            (theirs / name).unlink(missing_ok=True)
        return load_pretrained(theirs, **kw)


@contextlib.contextmanager
def attention_capture(model: nnx.Module, layer: int = -1, head: int = 0) -> Iterator[None]:
    """Inside the block, every cache-free (teacher-forced) `model.forward` records the
    attention probabilities `[B, L, L]` of query head `head` of text layer `layer`;
    `with_attention` runs a forward and returns them.
    For auxiliary losses on where the policy looks (jaxseg.train.objectness)."""
    with _set_head(model, "capture_head", layer, head, "attention_capture"):
        yield


@contextlib.contextmanager
def route_capture(model: nnx.Module, layer: int = -2, head: int = 0) -> Iterator[None]:
    """As `attention_capture`, a second head's probabilities (`with_attention(...,
    route=True)`): by default head 0 of the layer before the last, whose output the last
    layer's queries read (jaxseg.train.objectness's routing supervision)."""
    with _set_head(model, "route_head", layer, head, "route_capture"):
        yield


@contextlib.contextmanager
def _set_head(model: nnx.Module, name: str, layer: int, head: int, who: str) -> Iterator[None]:
    lm = model.language_model
    if getattr(lm, "remat", "none") != "none":
        raise ValueError(f"{who}: not with remat (a rematerialised block sows nothing)")
    attn = lm.layers[layer].self_attn
    if not 0 <= head < attn.num_heads:
        raise ValueError(f"{who}: head {head} of {attn.num_heads}")
    before = vars(attn).get(name)  # nested blocks restore the outer one's head
    setattr(attn, name, head)
    try:
        yield
    finally:
        if before is None:
            delattr(attn, name)
        else:
            setattr(attn, name, before)


def with_attention(
    fn: Callable[[nnx.Module], Any], model: nnx.Module, *, values: bool = False, route: bool = False
) -> tuple[Any, ...]:
    """`fn(model)` (one teacher-forced forward, inside `attention_capture`) and the
    probabilities `[B, L, L]` it recorded (`nnx.capture`: nothing stays on the model); with
    `values`, also the values `[B, L, Dh]` the captured head reads; with `route` (inside
    `route_capture` too), last the route head's probabilities `[B, L, L]`."""
    out, state = nnx.capture(fn, nnx.Intermediate)(model)
    records: dict[str, list] = {"attention_probs": [], "attention_values": [], "route_probs": []}
    for path, v in nnx.to_flat_state(state):
        v = v.get_value() if hasattr(v, "get_value") else v
        records[str(path[-1])].extend(v if isinstance(v, tuple) else (v,))
    if len(records["attention_probs"]) != 1 or len(records["attention_values"]) != 1:
        raise RuntimeError(
            f"with_attention: {len(records['attention_probs'])} attention records (one "
            "forward inside attention_capture expected)"
        )
    got = (out, records["attention_probs"][0])
    if values:
        got += (records["attention_values"][0],)
    if route:
        if len(records["route_probs"]) != 1:
            raise RuntimeError(
                f"with_attention: {len(records['route_probs'])} route records (one forward "
                "inside route_capture expected)"
            )
        got += (records["route_probs"][0],)
    return got
