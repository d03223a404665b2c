"""One tiny-SAM2 sidecar shared by every test in tests/segmenter (start-up ~1-3 s)."""

from __future__ import annotations

import numpy as np
import pytest

from jaxseg.segmenter.sidecar import SidecarClient, SidecarConfig

TINY_SAM2 = {"model": "tiny", "num_threads": 1, "seed": 0}


@pytest.fixture(scope="session")
def sam2_sidecar():
    pytest.importorskip("torch")
    pytest.importorskip("sam2")
    client = SidecarClient(SidecarConfig(backend="sam2", backend_config=TINY_SAM2, timeout_s=120))
    client.start()
    yield client
    client.close()


def _moving_squares(t: int = 8, h: int = 64, w: int = 80, seed: int = 0) -> np.ndarray:
    """[T, H, W, 3] uint8: two flat squares moving over a noisy grey background."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(90, 130, (t, h, w, 3), dtype=np.uint8)
    for i in range(t):
        frames[i, 10:26, 4 + 2 * i : 20 + 2 * i] = (220, 40, 40)
        frames[i, 36:56, 50 - i : 70 - i] = (50, 90, 235)
    return frames


@pytest.fixture(scope="session")
def moving_squares():
    return _moving_squares
