"""The rollout sampler (jaxseg.sampling) on meshes (8,1,1), (1,2,4), (2,2,2): greedy tokens and
log-probs equal the unsharded run. (1,2,4) puts tensor=4 on a model with 2 KV heads: the
cache's head dimension must fall back to replication.)"""

from __future__ import annotations

import numpy as np
import pytest

from jaxseg.parallel import mesh_from_shape
from jaxseg.sampling import Prompt, Sampler, SamplingParams

from .conftest import IMAGE_TOKEN, VISION_END, VISION_START
from .test_rules import MESHES, sharded_copy

GREEDY = SamplingParams(temperature=0.0)


def _prompts(n: int = 8) -> list[Prompt]:
    """Image + text prompts of different lengths (left padding inside the sampler)."""
    rng = np.random.default_rng(3)
    out = []
    for i in range(n):
        grid = np.array([[1, 4, 4 + 2 * (i % 2)]])
        tokens = int(grid.prod()) // 4
        ids = [int(t) for t in rng.integers(1, 280, 2 + i % 3)]
        ids += [VISION_START] + [IMAGE_TOKEN] * tokens + [VISION_END]
        ids += [int(t) for t in rng.integers(1, 280, 3)]
        pixels = rng.standard_normal((int(grid.prod()), 1176)).astype(np.float32)
        out.append(Prompt(ids, pixel_values=pixels, image_grid_thw=grid))
    return out


@pytest.fixture(scope="module")
def reference(tiny_model):
    return Sampler(tiny_model).generate(_prompts(), max_new_tokens=6, sampling=GREEDY)


@pytest.mark.parametrize("shape", MESHES, ids=lambda s: "x".join(map(str, s)))
def test_sampler_on_mesh_equals_unsharded(shape, tiny_model, reference):
    mesh = mesh_from_shape(shape)
    sampler = Sampler(sharded_copy(tiny_model, mesh), mesh=mesh)
    out = sampler.generate(_prompts(), max_new_tokens=6, sampling=GREEDY)
    np.testing.assert_array_equal(out.tokens, reference.tokens)
    np.testing.assert_array_equal(out.lengths, reference.lengths)
    np.testing.assert_allclose(out.logprobs, reference.logprobs, atol=1e-5, rtol=0)
    cache = out.state.cache.keys[0]
    assert len(cache.sharding.device_set) == 8
