"""`MeshSampler`: jaxseg.sampling's Sampler with inputs and KV cache placed by this package's
rules, which replicate a dimension its mesh axes do not divide.

The base Sampler maps logical axes straight to a PartitionSpec, so on a mesh whose tensor
axis does not divide the KV heads (tiny test models: 2 KV heads on tensor=4; Qwen2.5-VL-3B:
2 KV heads on tensor=4 or 8) placing the cache raises IndivisibleError. Until the Sampler uses
`jaxseg.parallel.rules` itself, this subclass is the mesh-safe one (tests/parallel/
test_sampler_mesh.py shows both)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxseg.models.qwen2_5_vl import KVCache
from jaxseg.sampling import Sampler

from .rules import kv_cache_shardings, named_sharding


class MeshSampler(Sampler):
    def _put(self, x, logical):
        if self.mesh is None or x is None:
            return x if x is None else jnp.asarray(x)
        return jax.device_put(x, named_sharding(np.shape(x), logical, self.mesh))

    def _new_cache(self, batch: int, length: int) -> KVCache:
        cache = KVCache.create(self.config.text, batch, length, dtype=self.model.dtype)
        if self.mesh is None:
            return cache
        return jax.device_put(cache, kv_cache_shardings(cache, self.mesh))
