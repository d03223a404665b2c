"""Mask propagation backends behind one interface (see interface.py).

- "sam2": frozen SAM2.1 in a sidecar process (sidecar.py + sam2_backend.py);
- "classical": colour/connected-component tracker for the synthetic world, a stand-in for SAM2
  when there are no weights (classical.py);
- "oracle": ground-truth masks (oracle.py).

`make_backend` builds exactly the backend named; there is no fallback from sam2 to anything
else: if the sidecar cannot start, the error surfaces. This module never imports torch.
"""

from __future__ import annotations

from typing import Any

from jaxseg.segmenter.interface import (
    InvalidRequestError,
    MaskBackend,
    MaskRequest,
    MaskResult,
    ObjectPrompt,
    VideoHandle,
    segment_frames,
)

BACKENDS = ("sam2", "classical", "oracle")


def make_backend(name: str, config: dict[str, Any] | None = None, cache_entries: int = 256):
    """Build backend `name`. config: for "sam2", Sam2Config fields (model, checkpoint, device,
    ...) plus optional "sidecar" (SidecarConfig fields); for "classical", ClassicalConfig
    fields; for "oracle", OracleBackend kwargs. cache_entries=0 disables the LRU."""
    config = dict(config or {})
    if name == "sam2":
        from jaxseg.segmenter.sidecar import SidecarClient, SidecarConfig

        side = dict(config.pop("sidecar", {}))
        backend = SidecarClient(SidecarConfig(backend="sam2", backend_config=config, **side))
    elif name == "classical":
        from jaxseg.segmenter.classical import ClassicalBackend, ClassicalConfig

        backend = ClassicalBackend(ClassicalConfig(**config))
    elif name == "oracle":
        from jaxseg.segmenter.oracle import OracleBackend

        return OracleBackend(**config)
    else:
        raise InvalidRequestError(f"segmenter.backend: {name!r} is not one of {list(BACKENDS)}")
    if cache_entries:
        from jaxseg.segmenter.cache import CachingBackend

        return CachingBackend(backend, max_entries=cache_entries)
    return backend


__all__ = [
    "BACKENDS",
    "MaskBackend",
    "MaskRequest",
    "MaskResult",
    "ObjectPrompt",
    "VideoHandle",
    "make_backend",
    "segment_frames",
]
