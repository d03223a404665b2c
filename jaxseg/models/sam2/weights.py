"""SAM2 checkpoint <-> SAM2MaskDecoderModule: the `sam_prompt_encoder.*` / `sam_mask_decoder.*`
tensors of a SAM2 `.pt` (`{"model": state_dict}`, what `build_sam2` loads) or of a state dict.

The nnx tree mirrors torch's module names, so a key maps by name, with three rules:
- prefixes `sam_prompt_encoder.` / `sam_mask_decoder.` <-> `prompt_encoder.` / `mask_decoder.`;
- the torch Sequentials' indices get names (`mask_downscaling.0` <-> `mask_downscaling.conv1`,
  `output_upscaling.3` <-> `output_upscaling.upconv2`, ...);
- a leaf `kernel` (nnx.Linear) is torch's `weight` transposed, `scale` (nnx.LayerNorm) is
  `weight`; every other leaf (`weight`, `bias`, the PE buffer) keeps torch's layout.
Loading is strict: a parameter with no tensor, a tensor of ours with no parameter, or a shape
mismatch raises WeightsError naming the key(s). Keys outside the two prefixes (image encoder,
memory modules) are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx

from .config import Sam2DecoderConfig
from .model import SAM2MaskDecoderModule

TORCH_PREFIXES = {"prompt_encoder": "sam_prompt_encoder", "mask_decoder": "sam_mask_decoder"}
_SEQUENTIAL_NAMES = {
    "mask_downscaling": {"0": "conv1", "1": "norm1", "3": "conv2", "4": "norm2", "6": "conv3"},
    "output_upscaling": {"0": "upconv1", "1": "norm1", "3": "upconv2"},
}


class WeightsError(ValueError):
    """A checkpoint that does not fit the module (names the offending keys)."""


def _torch_key(path: tuple[str, ...]) -> tuple[str, bool]:
    """nnx path -> (torch key, transpose?)."""
    parts = [TORCH_PREFIXES.get(path[0], path[0])]
    for prev, name in zip(path[:-2], path[1:-1], strict=True):
        inverse = {v: k for k, v in _SEQUENTIAL_NAMES.get(prev, {}).items()}
        parts.append(inverse.get(name, name))
    leaf = path[-1]
    parts.append("weight" if leaf in ("kernel", "scale") else leaf)
    return ".".join(parts), leaf == "kernel"


def _variables(module: SAM2MaskDecoderModule) -> dict[str, tuple[str, bool, nnx.Variable]]:
    """torch key -> (nnx path, transpose?, variable) for every array in the module."""
    out = {}
    for path, var in nnx.to_flat_state(nnx.state(module)):
        path = tuple(str(p) for p in path)
        key, transpose = _torch_key(path)
        out[key] = (".".join(path), transpose, var)
    return out


def _as_numpy(t: Any) -> np.ndarray:
    if hasattr(t, "detach"):  # torch tensor (bf16 has no numpy dtype: go through float32)
        t = t.detach().cpu()
        if str(t.dtype) == "torch.bfloat16":
            t = t.float()
        return t.numpy()
    return np.asarray(t)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The state dict of a SAM2 `.pt` ({"model": ...} as sam2 saves it, or a bare state dict)."""
    import torch  # only for reading .pt files

    try:
        blob = torch.load(str(path), map_location="cpu", weights_only=True)
    except FileNotFoundError as e:
        raise WeightsError(f"{path}: no such file") from e
    if isinstance(blob, Mapping) and "model" in blob and isinstance(blob["model"], Mapping):
        blob = blob["model"]
    if not isinstance(blob, Mapping):
        raise WeightsError(f"{path}: expected a state dict or {{'model': state_dict}}")
    return dict(blob)


def load_torch_weights(
    module: SAM2MaskDecoderModule,
    source: str | Path | Mapping[str, Any],
    prefix: str = "",
) -> SAM2MaskDecoderModule:
    """Fill `module` in place from a `.pt` path or a state dict (torch tensors or arrays).

    prefix: prepended to sam2's names, e.g. "grounding_encoder.sam2_model." for a Sa2VA
    checkpoint. Returns the module.
    """
    where = str(source) if isinstance(source, str | Path) else "state_dict"
    state = read_checkpoint(source) if isinstance(source, str | Path) else dict(source)
    ours = _variables(module)
    wanted = tuple(prefix + p + "." for p in TORCH_PREFIXES.values())
    missing = [k for k in ours if prefix + k not in state]
    unexpected = [k for k in state if k.startswith(wanted) and k[len(prefix) :] not in ours]
    if missing or unexpected:
        raise WeightsError(
            f"{where}: does not match the decoder config: missing {missing[:8]}"
            f"{'...' if len(missing) > 8 else ''} ({len(missing)}), unexpected "
            f"{unexpected[:8]}{'...' if len(unexpected) > 8 else ''} ({len(unexpected)})"
        )
    bad = []
    values = {}
    for key, (_, transpose, var) in ours.items():
        arr = _as_numpy(state[prefix + key])
        if transpose:
            arr = arr.T
        shape = var.get_value().shape
        if arr.shape != shape:
            bad.append(f"{prefix + key}: checkpoint {arr.shape} vs module {shape}")
        values[key] = arr
    if bad:
        raise WeightsError(f"{where}: shape mismatch: " + "; ".join(bad[:8]))
    for key, (_, _, var) in ours.items():
        var.set_value(jnp.asarray(values[key], dtype=var.get_value().dtype))
    return module


def from_torch_weights(
    cfg: Sam2DecoderConfig, source: str | Path | Mapping[str, Any], prefix: str = ""
) -> SAM2MaskDecoderModule:
    """A module built abstractly (`nnx.eval_shape`: no random init, which costs seconds of
    per-parameter compiles on CPU) and filled from a checkpoint, strictly."""
    module = nnx.eval_shape(lambda: SAM2MaskDecoderModule(cfg, nnx.Rngs(0)))
    return load_torch_weights(module, source, prefix)


def export_torch_state_dict(
    module: SAM2MaskDecoderModule, prefix: str = ""
) -> dict[str, np.ndarray]:
    """sam2's keys -> numpy arrays in torch layouts (`torch.from_numpy` each, then
    `load_state_dict` on a SAM2Base, or on the bare modules after stripping the prefixes)."""
    out = {}
    for key, (_, transpose, var) in _variables(module).items():
        arr = np.asarray(var.get_value())
        out[prefix + key] = np.array(arr.T if transpose else arr)  # a writable copy
    return out


def save_torch_checkpoint(module: SAM2MaskDecoderModule, path: str | Path) -> None:
    """Write `{"model": state_dict}` with only the two heads (merge into a full SAM2 checkpoint
    before `build_sam2(ckpt_path=...)`, which loads strictly)."""
    import torch

    state = {k: torch.from_numpy(v) for k, v in export_torch_state_dict(module).items()}
    torch.save({"model": state}, str(path))
