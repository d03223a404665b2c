"""torch state_dict -> jaxseg -> export -> torch load_state_dict(strict)
gives identical outputs; a checkpoint that does not fit names the key."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flax import nnx

from jaxseg.models.sam2 import (
    SAM2MaskDecoderModule,
    WeightsError,
    export_torch_state_dict,
    from_torch_weights,
    load_torch_weights,
    save_torch_checkpoint,
    tiny,
)
from jaxseg.models.sam2.torch_reference import build_torch_heads, torch_state_dict


def _run_torch(pe, md, seed=0):
    g = torch.Generator().manual_seed(seed)
    embed = torch.randn(2, 32, 16, 16, generator=g)
    hr = [torch.randn(2, 4, 64, 64, generator=g), torch.randn(2, 8, 32, 32, generator=g)]
    coords = torch.rand(2, 2, 2, generator=g) * 256
    labels = torch.tensor([[1, 0], [1, 1]], dtype=torch.int32)
    with torch.no_grad():
        sparse, dense = pe(points=(coords, labels), boxes=None, masks=None)
        out = md(embed, pe.get_dense_pe(), sparse, dense, True, False, hr)
    return [x.numpy() for x in out]


def _split(sd):
    pe = {
        k.removeprefix("sam_prompt_encoder."): v
        for k, v in sd.items()
        if k.startswith("sam_prompt_encoder.")
    }
    md = {
        k.removeprefix("sam_mask_decoder."): v
        for k, v in sd.items()
        if k.startswith("sam_mask_decoder.")
    }
    return pe, md


def test_round_trip_through_jaxseg_is_exact(tmp_path):
    cfg = tiny()
    pe, md = build_torch_heads(cfg, seed=0)
    ours = from_torch_weights(cfg, torch_state_dict(pe, md))
    exported = export_torch_state_dict(ours)
    assert set(exported) == set(torch_state_dict(pe, md))
    pe2, md2 = build_torch_heads(cfg, seed=1)  # different weights, overwritten below
    sd_pe, sd_md = _split({k: torch.from_numpy(v) for k, v in exported.items()})
    pe2.load_state_dict(sd_pe, strict=True)
    md2.load_state_dict(sd_md, strict=True)
    for a, b in zip(_run_torch(pe, md), _run_torch(pe2, md2), strict=True):
        np.testing.assert_array_equal(a, b)
    # the same through a .pt file in sam2's {"model": ...} layout
    path = tmp_path / "heads.pt"
    save_torch_checkpoint(ours, path)
    again = from_torch_weights(cfg, path)
    for k, v in export_torch_state_dict(again).items():
        np.testing.assert_array_equal(v, exported[k])


def test_prefixed_checkpoint_and_foreign_keys():
    """A Sa2VA-style prefix is accepted; keys of other SAM2 modules are ignored."""
    cfg = tiny()
    pe, md = build_torch_heads(cfg)
    sd = {"grounding_encoder.sam2_model." + k: v for k, v in torch_state_dict(pe, md).items()}
    sd["grounding_encoder.sam2_model.image_encoder.trunk.w"] = torch.zeros(3)
    ours = from_torch_weights(cfg, sd, prefix="grounding_encoder.sam2_model.")
    exported = export_torch_state_dict(ours, prefix="grounding_encoder.sam2_model.")
    for k, v in exported.items():
        np.testing.assert_array_equal(v, sd[k].numpy())


def test_mismatches_name_the_key(tmp_path):
    cfg = tiny()
    pe, md = build_torch_heads(cfg)
    sd = torch_state_dict(pe, md)
    module = nnx.eval_shape(lambda: SAM2MaskDecoderModule(cfg, nnx.Rngs(0)))

    missing = dict(sd)
    del missing["sam_mask_decoder.iou_token.weight"]
    with pytest.raises(WeightsError, match=r"missing \['sam_mask_decoder.iou_token.weight'\]"):
        load_torch_weights(module, missing)

    extra = dict(sd, **{"sam_mask_decoder.new_head.weight": torch.zeros(2)})
    with pytest.raises(WeightsError, match="unexpected.*sam_mask_decoder.new_head.weight"):
        load_torch_weights(module, extra)

    bad = dict(sd)
    bad["sam_prompt_encoder.mask_downscaling.0.weight"] = torch.zeros(4, 1, 3, 3)
    with pytest.raises(WeightsError, match=r"mask_downscaling.0.weight: checkpoint \(4, 1, 3, 3\)"):
        load_torch_weights(module, bad)

    with pytest.raises(WeightsError, match="no such file"):
        load_torch_weights(module, tmp_path / "missing.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(WeightsError, match="list.pt: expected a state dict"):
        load_torch_weights(module, tmp_path / "list.pt")

    # a checkpoint of another size (hiera decoder C=256) into the tiny module
    big = {k: torch.zeros(*[2 * d for d in v.shape]) for k, v in sd.items()}
    with pytest.raises(WeightsError, match="shape mismatch"):
        load_torch_weights(module, big)
