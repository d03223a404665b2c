"""`jaxseg eval` on a split made by the synthetic generator (jaxseg.data.synth, ReVOS layout)."""

import json
import math

import numpy as np
import pytest

import jaxseg.data.synth as synth
from jaxseg import cli
from jaxseg.data.readers import read_revos
from jaxseg.data.readers.layouts import write_prediction_pngs
from jaxseg.eval import metrics


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    cfg = synth.SynthConfig.preset("medium", size=64, frames=(8, 8))
    synth.write_benchmark(root, {"valid": 4}, seed=5, cfg=cfg, progress=False)
    return root, read_revos(root, "valid")


def evaluate(pred, data, out):
    assert (
        cli.main(
            [
                "eval",
                "--pred",
                str(pred),
                "--data",
                str(data),
                "--format",
                "revos",
                "--split",
                "valid",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    return json.loads(out.read_text())


def test_gt_as_prediction_is_100(split, tmp_path):
    root, index = split
    assert {r.type_id for r in index} >= {0, 1}  # both subsets present
    for rec in index:
        write_prediction_pngs(
            tmp_path / "pred", rec.video_id, rec.exp_id, rec.frame_names, rec.target_masks()
        )
    result = evaluate(tmp_path / "pred", root, tmp_path / "r.json")
    for row in [*result["summary"]["subsets"].values(), result["summary"]["overall"]]:
        assert row["J"] == row["F"] == row["JF"] == 100.0
    assert result["summary"]["overall"]["R"] == 100.0


def test_shifted_predictions_match_an_independent_computation(split, tmp_path):
    """Shift every target mask 3 px right; recompute the ReVOS table here from the per-frame
    metric functions with VISA's rounding and averaging written out."""
    root, index = split
    per_type = {0: [], 1: []}
    for rec in index:
        gt = rec.target_masks()
        pred = np.zeros_like(gt)
        pred[..., 3:] = gt[..., :-3]
        write_prediction_pngs(tmp_path / "pred", rec.video_id, rec.exp_id, rec.frame_names, pred)
        if rec.type_id in per_type:
            j = metrics.region_iou(gt, pred).mean()
            f = metrics.boundary_f(gt, pred).mean()
            per_type[rec.type_id].append((round(100 * j, 2), round(100 * f, 2)))
    result = evaluate(tmp_path / "pred", root, tmp_path / "r.json")
    sub = result["summary"]["subsets"]
    expected_jf = []
    for type_id, name in ((0, "referring"), (1, "reasoning")):
        j_mean = sum(j for j, _ in per_type[type_id]) / len(per_type[type_id])
        f_mean = sum(f for _, f in per_type[type_id]) / len(per_type[type_id])
        assert sub[name]["J"] == pytest.approx(j_mean)
        assert sub[name]["F"] == pytest.approx(f_mean)
        expected_jf.append((j_mean + f_mean) / 2)
    overall = result["summary"]["overall"]["JF"]
    assert overall == pytest.approx(sum(expected_jf) / 2)
    assert 0 < overall < 100 and not math.isnan(overall)
