"""Hugging Face safetensors <-> nnx parameters, for every policy family.

A family gives a `WeightTable`: explicit (HF name template, nnx path template, transform)
entries, `{i}`-style groups, and how its released key layout maps onto transformers-5 names.
Loading:

* reads `model.safetensors` or a sharded `model.safetensors.index.json`;
* builds the model abstractly (`nnx.eval_shape`, no random init, no memory), so a parameter can
  only get a value from the file; any parameter no tensor filled, any tensor matching no
  parameter, any shape mismatch raises `WeightsError` naming the tensor(s);
* with `mesh`, places each tensor directly with its `NamedSharding` (jaxseg.parallel.rules).

Saving writes the family's released layout (what transformers 5.23 `save_pretrained` writes
too), in shards with an index when larger than `max_shard_bytes`, plus `config.json`, and
copies tokenizer/processor files from `reference_dir`.

Transforms: `id`; `t` (`kernel [in, out]` = torch `weight [out, in]`.T); `patch` (`kernel
[C*T*P*P, D]` from the Conv3d `weight [D, C, T, P, P]`).
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors import safe_open
from safetensors.numpy import save_file


class WeightsError(ValueError):
    """A checkpoint that does not match the model (names the offending tensors)."""


def _template_regex(template: str, groups: Mapping[str, str]) -> re.Pattern:
    out, pos = [], 0
    for m in re.finditer(r"\{(\w+)\}", template):
        out.append(re.escape(template[pos : m.start()]))
        out.append(f"(?P<{m.group(1)}>{groups[m.group(1)]})")
        pos = m.end()
    out.append(re.escape(template[pos:]))
    return re.compile("^" + "".join(out) + "$")


def _identity(name: str) -> str:
    return name


@dataclasses.dataclass(frozen=True)
class WeightTable:
    """One family's name mapping. `entries`: (HF template in transformers-5 names, nnx
    template, transform). `canonical` maps any accepted HF name onto transformers-5 names,
    `released` maps those back onto the layout the family's checkpoints ship with."""

    entries: Sequence[tuple[str, str, str]]
    groups: Mapping[str, str]
    canonical: Callable[[str], str] = _identity
    released: Callable[[str], str] = _identity

    def __post_init__(self):
        hf = [(_template_regex(h, self.groups), n, t) for h, n, t in self.entries]
        nn = [(_template_regex(n, self.groups), h, t) for h, n, t in self.entries]
        object.__setattr__(self, "_hf_to_nnx", hf)
        object.__setattr__(self, "_nnx_to_hf", nn)

    def hf_to_nnx_path(self, name: str) -> tuple[str, str] | None:
        """(nnx dotted path, transform) for an HF tensor name, either layout; None if unmapped."""
        canonical = self.canonical(name)
        for regex, nnx_t, transform in self._hf_to_nnx:
            m = regex.match(canonical)
            if m:
                return nnx_t.format(**m.groupdict()), transform
        return None

    def nnx_path_to_hf(self, path: str, layout: str = "released") -> tuple[str, str]:
        """(HF name, transform) for an nnx dotted parameter path."""
        for regex, hf_t, transform in self._nnx_to_hf:
            m = regex.match(path)
            if m:
                name = hf_t.format(**m.groupdict())
                return (self.released(name) if layout == "released" else name), transform
        raise WeightsError(f"no HF name for parameter {path!r}")


# ----------------------------------------------------------------------------- transforms
def to_nnx(array: np.ndarray, transform: str) -> np.ndarray:
    if transform == "id":
        return array
    if transform == "t":
        return array.T
    if transform == "patch":  # [D, C, T, P, P] -> [C*T*P*P, D]
        return array.reshape(array.shape[0], -1).T
    raise AssertionError(transform)


def to_hf(array: np.ndarray, transform: str, config: Any) -> np.ndarray:
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


def expected_hf_shape(shape: tuple[int, ...], transform: str, config: Any) -> tuple[int, ...]:
    return to_hf(np.empty(shape, np.int8), transform, config).shape


# ----------------------------------------------------------------------------- reading files
def checkpoint_files(directory: Path) -> list[Path]:
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
    for file in checkpoint_files(Path(directory)):
        with safe_open(file, framework="numpy") as f:
            for name in f.keys():
                shape = tuple(f.get_slice(name).get_shape())
                yield name, (lambda f=f, n=name: f.get_tensor(n)), shape


def flat_params(model_or_state) -> dict[str, nnx.Variable]:
    state = nnx.state(model_or_state, nnx.Param)
    return {".".join(str(k) for k in path): var for path, var in nnx.to_flat_state(state)}


# ----------------------------------------------------------------------------- load
def load_pretrained(
    directory: str | Path,
    *,
    config: Any,
    build: Callable[[], nnx.Module],
    table: WeightTable,
    dtype: jnp.dtype = jnp.float32,
    param_dtype: jnp.dtype | None = None,
    mesh: jax.sharding.Mesh | None = None,
    rules=None,
) -> nnx.Module:
    """Fills the abstract model `build()` (under `nnx.eval_shape`) from `directory`.

    With `mesh`, parameters are placed with the logical->mesh `rules`."""
    from jaxseg.parallel.rules import RULES, variable_sharding

    directory = Path(directory)
    param_dtype = dtype if param_dtype is None else param_dtype
    abstract = nnx.eval_shape(build)
    targets = flat_params(abstract)
    loaded: dict[str, jax.Array] = {}
    unexpected: list[str] = []
    tied_lm_head: np.ndarray | None = None
    for name, load, shape in iter_safetensors(directory):
        mapped = table.hf_to_nnx_path(name)
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
        want = expected_hf_shape(var.shape, transform, config)
        if shape != want:
            raise WeightsError(
                f"{directory}: tensor {name!r} has shape {list(shape)}, expected {list(want)} "
                f"for parameter {path}"
            )
        value = np.ascontiguousarray(to_nnx(load(), transform)).astype(param_dtype)
        if mesh is not None:
            loaded[path] = jax.device_put(value, variable_sharding(var, mesh, rules or RULES))
        else:
            loaded[path] = jnp.asarray(value)
    if unexpected:
        raise WeightsError(f"{directory}: unexpected tensors (no parameter): {sorted(unexpected)}")
    missing = sorted(set(targets) - set(loaded))
    if missing:
        names = [table.nnx_path_to_hf(p)[0] for p in missing]
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
    model: nnx.Module,
    out_dir: str | Path,
    reference_dir: str | Path | None = None,
    *,
    table: WeightTable,
    max_shard_bytes: int = 5 * 1024**3,
    layout: str = "released",
) -> list[Path]:
    """Writes safetensors (+ index when sharded) and config.json that transformers loads.

    `reference_dir`: copies its tokenizer / processor / generation files (not weights, not
    config.json). `layout`: 'released' or 'transformers5'. Returns the written weight files."""
    if layout not in ("released", "transformers5"):
        raise ValueError(f"layout must be 'released' or 'transformers5', got {layout!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = model.config
    tensors: dict[str, np.ndarray] = {}
    dtypes = set()
    for path, var in flat_params(model).items():
        name, transform = table.nnx_path_to_hf(path, layout)
        array = np.asarray(jax.device_get(var[...]))
        dtypes.add(array.dtype)
        tensors[name] = np.ascontiguousarray(to_hf(array, transform, config))

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
        _ship_processor_code(out_dir)
    return written


def _ship_processor_code(out_dir: Path) -> None:
    """A processor config whose `auto_map` names jaxseg's image-only processor module gets
    that module written beside it (this install's copy), whether or not the reference folder
    held it: without the file `AutoProcessor(..., trust_remote_code=True)` cannot load it."""
    from jaxseg.data.hf_processing import REMOTE_MODULE, add_remote_code

    config = out_dir / "processor_config.json"
    if not config.is_file():
        return
    auto_map = json.loads(config.read_text()).get("auto_map", {})
    if any(str(v).startswith(f"{REMOTE_MODULE}.") for v in auto_map.values()):
        add_remote_code(out_dir)
