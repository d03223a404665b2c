"""The host encoder (jaxseg.models.inputs): the one bucketing ladder, row checks, and the
same media encoding for a training batch and a sampling prefill of the same rows (both
families)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from jaxseg.models.family import get_family
from jaxseg.models.inputs import Prompt, bucket, check_row
from jaxseg.sampling import History, assemble_segment
from jaxseg.train.batch import make_policy_batch

IMG, VID, VS, VE = 60, 61, 62, 63
LADDER = sorted({1 << k for k in range(20)} | {3 << k for k in range(20)})


@example(3, 1)
@given(st.integers(0, 50_000), st.integers(1, 64))
def test_default_bucket_is_the_smallest_ladder_rung_that_fits(n, minimum):
    b = bucket(n, minimum=minimum)
    rungs = [r for r in LADDER if r >= max(n, minimum)]
    assert b == rungs[0]  # a rung (2^k or 3 * 2^(k-1)), the smallest that fits
    assert b < 1.5 * max(n, minimum) + 1  # never more than a third padding


def test_bucket_list_then_the_ladder_past_its_end():
    assert bucket(17, [64, 16, 32]) == 32
    assert bucket(64, [16, 64]) == 64
    assert bucket(65, [16, 64]) == 96  # past the largest entry: the default ladder
    with pytest.raises(ValueError, match=">= 0"):
        bucket(-1)


def _config(family: str):
    return get_family(family).preset(
        "nano",
        vocab_size=64,
        image_token_id=IMG,
        video_token_id=VID,
        vision_start_token_id=VS,
        vision_end_token_id=VE,
    )


def _row(rng, cfg, grids, n_text=5) -> Prompt:
    """[text] then per image grid [vs img*(t*h*w/4) ve]."""
    ids = list(rng.integers(1, 50, n_text))
    for t, h, w in grids:
        ids += [VS] + [IMG] * (t * h * w // cfg.vision.spatial_merge_unit) + [VE]
    n = sum(t * h * w for t, h, w in grids)
    pixels = rng.normal(size=(n, cfg.vision.patch_dim)).astype(np.float32) if grids else None
    return Prompt(ids, pixels, np.asarray(grids) if grids else None)


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_training_and_sampling_encode_media_alike(family):
    cfg = _config(family)
    rng = np.random.default_rng(0)
    rows = [_row(rng, cfg, [(1, 4, 4)]), _row(rng, cfg, []), _row(rng, cfg, [(1, 4, 8), (1, 4, 4)])]
    examples = [
        {
            "input_ids": np.asarray(r.input_ids),
            "policy_mask": np.ones(len(r.input_ids)),
            **(
                {"pixel_values": r.pixel_values, "image_grid_thw": r.image_grid_thw}
                if r.pixel_values is not None
                else {}
            ),
        }
        for r in rows
    ]
    train = make_policy_batch(examples, config=cfg)
    prefill, _, _ = assemble_segment([History()] * len(rows), rows, cfg)
    n_real = 16 + 32 + 16
    assert (
        train.pixel_values.shape[0] == prefill.pixel_values.shape[0] == bucket(n_real, minimum=64)
    )
    np.testing.assert_array_equal(train.pixel_values, prefill.pixel_values)
    np.testing.assert_array_equal(train.pixel_values[n_real:], 0)
    t_layout, s_layout = train.image_layout, prefill.image_layout
    assert type(t_layout) is type(s_layout)
    assert t_layout.num_patches == s_layout.num_patches == train.pixel_values.shape[0]
    for field in dataclasses.fields(t_layout):
        if field.name != "num_patches":
            np.testing.assert_array_equal(
                getattr(t_layout, field.name), getattr(s_layout, field.name), err_msg=field.name
            )


def test_check_row_names_the_row_and_the_field():
    cfg = _config("qwen2_5_vl")
    rng = np.random.default_rng(1)
    good = _row(rng, cfg, [(1, 4, 4)])
    assert check_row(0, good, cfg).tolist() == list(good.input_ids)
    with pytest.raises(ValueError, match="row 2: empty prompt"):
        check_row(2, Prompt([]), cfg)
    with pytest.raises(ValueError, match="row 0: prompt token id 64 outside"):
        check_row(0, Prompt([1, 64]), cfg)
    with pytest.raises(ValueError, match="must be given together"):
        check_row(0, dataclasses.replace(good, image_grid_thw=None), cfg)
    with pytest.raises(ValueError, match="1 runs of image placeholder tokens but 2 rows"):
        check_row(0, dataclasses.replace(good, image_grid_thw=np.array([[1, 2, 2]] * 2)), cfg)
    with pytest.raises(ValueError, match="pixel_values has 16 rows, image_grid_thw needs 32"):
        check_row(0, dataclasses.replace(good, image_grid_thw=np.array([[1, 4, 8]])), cfg)
