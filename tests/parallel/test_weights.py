"""Sharded safetensors loading: values equal the saved model, arrays land in their rule's
sharding, and each read is one device's slice, not the whole tensor."""

from __future__ import annotations

import collections
import json
import math

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import load_file, save_file

from jaxseg.models.qwen2_5_vl import WeightsError, save_pretrained
from jaxseg.parallel import mesh_from_shape
from jaxseg.parallel.rules import state_shardings
from jaxseg.parallel.weights import load_sharded


@pytest.fixture(scope="module")
def saved_dir(tiny_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_ckpt")
    save_pretrained(tiny_model, path)  # released layout: visual.*, model.layers.*
    return path


def _flat(model):
    return {
        ".".join(map(str, p)): v[...] for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))
    }


@pytest.mark.parametrize("shape", [(1, 2, 4), (2, 2, 2)], ids=["1x2x4", "2x2x2"])
def test_load_sharded_equals_saved_and_reads_device_slices(saved_dir, tiny_model, shape):
    mesh = mesh_from_shape(shape)
    reads = collections.defaultdict(list)
    model = load_sharded(saved_dir, mesh, on_read=lambda name, s: reads[name].append(s))
    want = _flat(tiny_model)
    got = _flat(model)
    targets = {".".join(map(str, p)): s for p, s in nnx.to_flat_state(state_shardings(model, mesh))}
    assert got.keys() == want.keys()
    for path, value in got.items():
        assert value.sharding == targets[path], path
        np.testing.assert_array_equal(np.asarray(value), np.asarray(want[path]), err_msg=path)

    # q_proj [64, 64] sharded fsdp x tensor: every read is one shard, each shard read once per
    # host (a replicated 'data' axis does not read it twice), in total the tensor once.
    name = "model.layers.0.self_attn.q_proj.weight"
    fsdp, tensor = mesh.shape["fsdp"], mesh.shape["tensor"]
    assert set(reads[name]) == {(64 // tensor, 64 // fsdp)}  # HF weight is [out, in]
    assert len(reads[name]) == fsdp * tensor
    # The patch embedding (transform 'patch', [D, C, T, P, P] in the file) reads D slices.
    patch = reads["visual.patch_embed.proj.weight"]
    assert sum(s[0] for s in patch) == 32 and all(s[1:] == (3, 2, 14, 14) for s in patch)
    # Distinct device slices partition each tensor and each is read once: this host read
    # every tensor exactly once in total, never once per device.
    stored = load_file(saved_dir / "model.safetensors")
    assert reads.keys() == stored.keys()
    for hf_name, shapes in reads.items():
        assert sum(math.prod(s) for s in shapes) == stored[hf_name].size, hf_name


def test_load_sharded_casts_to_param_dtype(saved_dir):
    model = load_sharded(saved_dir, mesh_from_shape((1, 2, 4)), param_dtype=jnp.bfloat16)
    assert model.visual.patch_embed.kernel[...].dtype == jnp.bfloat16
    assert model.lm_head.kernel[...].dtype == jnp.bfloat16


def test_missing_and_misshapen_tensors_are_named(saved_dir, tmp_path):
    tensors = load_file(saved_dir / "model.safetensors")
    config = json.loads((saved_dir / "config.json").read_text())
    mesh = mesh_from_shape((1, 2, 2))

    broken = tmp_path / "missing"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps(config))
    save_file(
        {k: v for k, v in tensors.items() if k != "model.norm.weight"},
        broken / "model.safetensors",
    )
    with pytest.raises(WeightsError, match="missing tensors.*model.norm.weight"):
        load_sharded(broken, mesh)

    bad = tmp_path / "shape"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps(config))
    tensors = dict(tensors)
    tensors["lm_head.weight"] = tensors["lm_head.weight"][:, :10].copy()
    save_file(tensors, bad / "model.safetensors")
    with pytest.raises(WeightsError, match="'lm_head.weight' has shape"):
        load_sharded(bad, mesh)
