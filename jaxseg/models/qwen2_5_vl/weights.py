"""Hugging Face safetensors <-> nnx parameters for Qwen2.5-VL.

Every tensor is mapped by an explicit table (`_TABLE`: HF name template <-> nnx path template
+ layout transform). Loading:

* accepts both key layouts: the released checkpoints' (`visual.*`, `model.layers.*`,
  `model.embed_tokens.*`) and transformers-5 module names (`model.visual.*`,
  `model.language_model.*`);
* reads `model.safetensors` or a sharded `model.safetensors.index.json`;
* builds the model abstractly (`nnx.eval_shape`, no random init, no memory), so a parameter can
  only get a value from the file; any parameter no tensor filled, any tensor matching no
  parameter, any shape mismatch raises `WeightsError` naming the tensor(s);
* with `mesh`, places each tensor directly with its `NamedSharding` (sharding.py).

Saving writes the released layout (what transformers 5.23 `save_pretrained` writes too), in
shards with an index when larger than `max_shard_bytes`, plus `config.json`, and copies
tokenizer/processor files from `reference_dir`.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors import safe_open
from safetensors.numpy import save_file

from .config import Qwen2_5_VLConfig
from .model import Qwen2_5_VLForConditionalGeneration


class WeightsError(ValueError):
    """A checkpoint that does not match the model (names the offending tensors)."""


# ----------------------------------------------------------------------------- mapping table
# (HF name template, nnx path template, transform). `{i}` = layer index, `{x}` = alternatives
# listed in _GROUPS. HF names are in transformers-5 form; `_canonical_hf_name` maps the
# released layout onto it.
_GROUPS = {
    "i": r"\d+",
    "norm": r"norm1|norm2",
    "attn": r"qkv|proj",
    "mlp": r"gate_proj|up_proj|down_proj",
    "qkvo": r"q_proj|k_proj|v_proj|o_proj",
    "qkv": r"q_proj|k_proj|v_proj",
    "ln": r"input_layernorm|post_attention_layernorm",
}
_V = "model.visual"
_T = "model.language_model"
_TABLE: list[tuple[str, str, str]] = [
    (f"{_V}.patch_embed.proj.weight", "visual.patch_embed.kernel", "patch"),
    (f"{_V}.blocks.{{i}}.{{norm}}.weight", "visual.blocks.{i}.{norm}.weight", "id"),
    (f"{_V}.blocks.{{i}}.attn.{{attn}}.weight", "visual.blocks.{i}.attn.{attn}.kernel", "t"),
    (f"{_V}.blocks.{{i}}.attn.{{attn}}.bias", "visual.blocks.{i}.attn.{attn}.bias", "id"),
    (f"{_V}.blocks.{{i}}.mlp.{{mlp}}.weight", "visual.blocks.{i}.mlp.{mlp}.kernel", "t"),
    (f"{_V}.blocks.{{i}}.mlp.{{mlp}}.bias", "visual.blocks.{i}.mlp.{mlp}.bias", "id"),
    (f"{_V}.merger.ln_q.weight", "visual.merger.ln_q.weight", "id"),
    (f"{_V}.merger.mlp.0.weight", "visual.merger.fc1.kernel", "t"),
    (f"{_V}.merger.mlp.0.bias", "visual.merger.fc1.bias", "id"),
    (f"{_V}.merger.mlp.2.weight", "visual.merger.fc2.kernel", "t"),
    (f"{_V}.merger.mlp.2.bias", "visual.merger.fc2.bias", "id"),
    (f"{_T}.embed_tokens.weight", "language_model.embed_tokens.embedding", "id"),
    (
        f"{_T}.layers.{{i}}.self_attn.{{qkvo}}.weight",
        "language_model.layers.{i}.self_attn.{qkvo}.kernel",
        "t",
    ),
    (
        f"{_T}.layers.{{i}}.self_attn.{{qkv}}.bias",
        "language_model.layers.{i}.self_attn.{qkv}.bias",
        "id",
    ),
    (f"{_T}.layers.{{i}}.mlp.{{mlp}}.weight", "language_model.layers.{i}.mlp.{mlp}.kernel", "t"),
    (f"{_T}.layers.{{i}}.{{ln}}.weight", "language_model.layers.{i}.{ln}.weight", "id"),
    (f"{_T}.norm.weight", "language_model.norm.weight", "id"),
    ("lm_head.weight", "lm_head.kernel", "t"),
]


def _template_regex(template: str) -> re.Pattern:
    out, pos = [], 0
    for m in re.finditer(r"\{(\w+)\}", template):
        out.append(re.escape(template[pos : m.start()]))
        out.append(f"(?P<{m.group(1)}>{_GROUPS[m.group(1)]})")
        pos = m.end()
    out.append(re.escape(template[pos:]))
    return re.compile("^" + "".join(out) + "$")


_HF_TO_NNX = [(_template_regex(hf), nnx_t, tr) for hf, nnx_t, tr in _TABLE]
_NNX_TO_HF = [(_template_regex(nnx_t), hf, tr) for hf, nnx_t, tr in _TABLE]


def _canonical_hf_name(name: str) -> str:
    """Released layout -> transformers-5 names (`visual.` -> `model.visual.`, `model.X` ->
    `model.language_model.X`)."""
    if name.startswith("visual."):
        return "model." + name
    if name.startswith("model.") and not name.startswith(("model.visual.", f"{_T}.")):
        return f"{_T}." + name[len("model.") :]
    return name


def _released_hf_name(name: str) -> str:
    if name.startswith("model.visual."):
        return name[len("model.") :]
    if name.startswith(f"{_T}."):
        return "model." + name[len(f"{_T}.") :]
    return name


def hf_to_nnx_path(name: str) -> tuple[str, str] | None:
    """(nnx dotted path, transform) for an HF tensor name, either layout; None if unmapped."""
    canonical = _canonical_hf_name(name)
    for regex, nnx_t, transform in _HF_TO_NNX:
        m = regex.match(canonical)
        if m:
            return nnx_t.format(**m.groupdict()), transform
    return None


def nnx_path_to_hf(path: str, layout: str = "released") -> tuple[str, str]:
    """(HF name, transform) for an nnx dotted parameter path."""
    for regex, hf_t, transform in _NNX_TO_HF:
        m = regex.match(path)
        if m:
            name = hf_t.format(**m.groupdict())
            return (_released_hf_name(name) if layout == "released" else name), transform
    raise WeightsError(f"no HF name for parameter {path!r}")


def _to_nnx(array: np.ndarray, transform: str) -> np.ndarray:
    if transform == "id":
        return array
    if transform == "t":
        return array.T
    if transform == "patch":  # [D, C, T, P, P] -> [C*T*P*P, D]
        return array.reshape(array.shape[0], -1).T
    raise AssertionError(transform)


def _to_hf(array: np.ndarray, transform: str, config: Qwen2_5_VLConfig) -> np.ndarray:
    if transform == "id":
        return array
    if transform == "t":
        return array.T
    if transform == "patch":
        v = config.vision
        return array.T.reshape(
            v.hidden_size, v.in_channels, v.temporal_patch_size, v.patch_size, v.patch_size
        )
    raise AssertionError(transform)


def _expected_hf_shape(shape: tuple[int, ...], transform: str, config) -> tuple[int, ...]:
    return _to_hf(np.empty(shape, np.int8), transform, config).shape


# ----------------------------------------------------------------------------- reading files
def _checkpoint_files(directory: Path) -> list[Path]:
    index = directory / "model.safetensors.index.json"
    if index.exists():
        weight_map = json.loads(index.read_text()).get("weight_map")
        if not isinstance(weight_map, dict):
            raise WeightsError(f"{index}: no 'weight_map'")
        files = sorted({directory / f for f in weight_map.values()})
        missing = [str(f) for f in files if not f.exists()]
        if missing:
            raise WeightsError(f"{index}: shard files not found: {missing}")
        return files
    single = directory / "model.safetensors"
    if single.exists():
        return [single]
    raise WeightsError(f"{directory}: neither model.safetensors nor model.safetensors.index.json")


def iter_safetensors(
    directory: str | Path,
) -> Iterator[tuple[str, Callable[[], np.ndarray], tuple]]:
    """(name, loader, shape) for every tensor of a checkpoint directory (lazy reads)."""
    for file in _checkpoint_files(Path(directory)):
        with safe_open(file, framework="numpy") as f:
            for name in f.keys():
                shape = tuple(f.get_slice(name).get_shape())
                yield name, (lambda f=f, n=name: f.get_tensor(n)), shape


def _flat_params(model_or_state) -> dict[str, nnx.Variable]:
    state = nnx.state(model_or_state, nnx.Param)
    return {".".join(str(k) for k in path): var for path, var in nnx.to_flat_state(state)}


# ----------------------------------------------------------------------------- load
def from_pretrained(
    directory: str | Path,
    *,
    dtype: jnp.dtype = jnp.float32,
    param_dtype: jnp.dtype | None = None,
    mesh: jax.sharding.Mesh | None = None,
    rules=None,
) -> Qwen2_5_VLForConditionalGeneration:
    """Loads a Qwen2.5-VL HF checkpoint directory (config.json + safetensors).

    dtype: computation dtype; param_dtype: storage dtype (defaults to dtype). With `mesh`,
    parameters are placed with the logical->mesh `rules` of sharding.py."""
    from .sharding import DEFAULT_RULES, param_sharding

    directory = Path(directory)
    param_dtype = dtype if param_dtype is None else param_dtype
    config = Qwen2_5_VLConfig.from_json_file(directory / "config.json")
    abstract = nnx.eval_shape(
        lambda: Qwen2_5_VLForConditionalGeneration(
            config, dtype=dtype, param_dtype=param_dtype, rngs=nnx.Rngs(0)
        )
    )
    targets = _flat_params(abstract)
    loaded: dict[str, jax.Array] = {}
    unexpected: list[str] = []
    tied_lm_head: np.ndarray | None = None
    for name, load, shape in iter_safetensors(directory):
        mapped = hf_to_nnx_path(name)
        if mapped is None:
            unexpected.append(name)
            continue
        path, transform = mapped
        if path == "lm_head.kernel" and config.tie_word_embeddings:
            tied_lm_head = load()  # allowed when tied, must equal the embedding (checked below)
            continue
        if path not in targets:
            unexpected.append(name)
            continue
        if path in loaded:
            raise WeightsError(f"{directory}: tensor {name!r} appears twice (as {path})")
        var = targets[path]
        want = _expected_hf_shape(var.shape, transform, config)
        if shape != want:
            raise WeightsError(
                f"{directory}: tensor {name!r} has shape {list(shape)}, expected {list(want)} "
                f"for parameter {path}"
            )
        value = np.ascontiguousarray(_to_nnx(load(), transform)).astype(param_dtype)
        if mesh is not None:
            loaded[path] = jax.device_put(value, param_sharding(var, mesh, rules or DEFAULT_RULES))
        else:
            loaded[path] = jnp.asarray(value)
    if unexpected:
        raise WeightsError(f"{directory}: unexpected tensors (no parameter): {sorted(unexpected)}")
    missing = sorted(set(targets) - set(loaded))
    if missing:
        names = [nnx_path_to_hf(p)[0] for p in missing]
        raise WeightsError(f"{directory}: missing tensors: {names}")
    if tied_lm_head is not None:
        embed = np.asarray(loaded["language_model.embed_tokens.embedding"], np.float32)
        if not np.array_equal(tied_lm_head.astype(np.float32), embed):
            raise WeightsError(
                f"{directory}: tie_word_embeddings is true but 'lm_head.weight' differs from "
                "the token embedding"
            )
    for path, var in targets.items():
        var.set_value(loaded[path])
    return abstract


# ----------------------------------------------------------------------------- save
_REFERENCE_SKIP = {"config.json", "model.safetensors.index.json"}


def save_pretrained(
    model: Qwen2_5_VLForConditionalGeneration,
    out_dir: str | Path,
    reference_dir: str | Path | None = None,
    *,
    max_shard_bytes: int = 5 * 1024**3,
    layout: str = "released",
) -> list[Path]:
    """Writes safetensors (+ index when sharded) and config.json that transformers loads.

    `reference_dir`: copies its tokenizer / processor / generation files (not weights, not
    config.json). `layout`: 'released' (visual.*, model.layers.*) or 'transformers5'
    (model.visual.*, model.language_model.*). Returns the written weight files."""
    if layout not in ("released", "transformers5"):
        raise ValueError(f"layout must be 'released' or 'transformers5', got {layout!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = model.config
    tensors: dict[str, np.ndarray] = {}
    dtypes = set()
    for path, var in _flat_params(model).items():
        name, transform = nnx_path_to_hf(path, layout)
        array = np.asarray(jax.device_get(var[...]))
        dtypes.add(array.dtype)
        tensors[name] = np.ascontiguousarray(_to_hf(array, transform, config))

    shards: list[dict[str, np.ndarray]] = [{}]
    size = 0
    for name in sorted(tensors):
        nbytes = tensors[name].nbytes
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = tensors[name]
        size += nbytes
    written: list[Path] = []
    metadata = {"format": "pt"}
    if len(shards) == 1:
        written.append(out_dir / "model.safetensors")
        save_file(shards[0], str(written[0]), metadata=metadata)
    else:
        weight_map = {}
        for k, shard in enumerate(shards, 1):
            fname = f"model-{k:05d}-of-{len(shards):05d}.safetensors"
            save_file(shard, str(out_dir / fname), metadata=metadata)
            written.append(out_dir / fname)
            weight_map.update(dict.fromkeys(shard, fname))
        total = sum(t.nbytes for t in tensors.values())
        (out_dir / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2)
        )

    hf_config = config.to_hf_dict()
    if len(dtypes) == 1:
        hf_config["dtype"] = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}[
            np.dtype(next(iter(dtypes))).name
        ]
    (out_dir / "config.json").write_text(json.dumps(hf_config, indent=2) + "\n")

    if reference_dir is not None:
        for src in Path(reference_dir).iterdir():
            if src.is_file() and src.name not in _REFERENCE_SKIP and src.suffix != ".safetensors":
                shutil.copy2(src, out_dir / src.name)
    return written
