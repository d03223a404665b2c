"""`jaxseg eval` end to end on ReVOS-layout fixtures written by the test."""

import json

import numpy as np
import pytest

from jaxseg import cli
from jaxseg.data.readers import read_revos
from jaxseg.data.readers.layouts import (
    ExpressionSpec,
    VideoSpec,
    write_prediction_pngs,
    write_revos,
)

H, W = 40, 60  # diagonal 72.1 px -> boundary tolerance ceil(0.008 * 72.1) = 1 px


def square(top, left, size=10):
    m = np.zeros((H, W), dtype=bool)
    m[top : top + size, left : left + size] = True
    return m


def fixture_videos():
    rng = np.random.default_rng(1)
    target = np.stack([square(10, 10)] * 2)
    other = np.stack([square(25, 40, 8)] * 2)
    return [
        VideoSpec(
            "v0",
            rng.integers(0, 255, (2, H, W, 3), dtype=np.uint8),
            {1: target},
            [ExpressionSpec("the square", [1], 0), ExpressionSpec("the thing that waits", [1], 1)],
        ),
        VideoSpec(
            "v1",
            rng.integers(0, 255, (2, H, W, 3), dtype=np.uint8),
            {1: other},
            [ExpressionSpec("the small box", [1], 0), ExpressionSpec("the unicorn", [], 2)],
        ),
    ]


def write_gt_as_prediction(data, pred):
    for rec in read_revos(data, "valid"):
        write_prediction_pngs(pred, rec.video_id, rec.exp_id, rec.frame_names, rec.target_masks())


def run_eval(tmp_path, *extra):
    out = tmp_path / "results.json"
    code = cli.main(
        [
            "eval",
            "--pred",
            str(tmp_path / "pred"),
            "--data",
            str(tmp_path / "data"),
            "--format",
            "revos",
            "--split",
            "valid",
            "--out",
            str(out),
            *extra,
        ]
    )
    return code, (json.loads(out.read_text()) if out.exists() else None)


def test_gt_as_prediction_scores_100(tmp_path, capsys):
    write_revos(tmp_path / "data", fixture_videos(), split="valid")
    write_gt_as_prediction(tmp_path / "data", tmp_path / "pred")
    code, result = run_eval(tmp_path)
    assert code == 0
    overall = result["summary"]["overall"]
    assert overall["J"] == overall["F"] == overall["JF"] == overall["R"] == 100.0
    assert set(result["summary"]["subsets"]) == {"referring", "reasoning", "null"}
    assert result["summary"]["subsets"]["null"]["JF"] == 100.0  # empty GT, empty prediction
    table = capsys.readouterr().out
    assert "referring" in table and "reasoning" in table and "overall" in table


def test_shifted_masks_give_the_hand_computed_value(tmp_path):
    write_revos(tmp_path / "data", fixture_videos(), split="valid")
    write_gt_as_prediction(tmp_path / "data", tmp_path / "pred")
    # v0 referring expression: predict the 10x10 square shifted right by k = 2 px
    write_prediction_pngs(
        tmp_path / "pred", "v0", "0", ["00000", "00001"], np.stack([square(10, 12)] * 2)
    )
    code, result = run_eval(tmp_path)
    assert code == 0
    # J = overlap 10x8 / union 10x12.
    # F with a 1-px tolerance: each box has 40 boundary px (seg2bmap); of the predicted ones,
    # 10 on the top row (cols 11..20), 3 on the left edge (rows 10, 18, 19) and 9 on the bottom
    # row (cols 12..20) lie within 1 px of a GT boundary px -> P = 22/40; by the mirrored count
    # (top cols 10..19, bottom cols 10..19, right rows 10 and 18) R = 22/40, F = 0.55.
    j, f = 80 / 120, 22 / 40
    r = 1 - 20 / 100  # 20 px outside the target, foreground = the 100 px square
    ref_j, ref_f, ref_r = round(100 * j, 2), round(100 * f, 2), round(100 * r, 2)  # VISA rounding
    sub = result["summary"]["subsets"]
    assert sub["referring"]["J"] == pytest.approx((ref_j + 100) / 2)  # two referring expressions
    assert sub["referring"]["F"] == pytest.approx((ref_f + 100) / 2)
    assert sub["referring"]["R"] == pytest.approx((ref_r + 100) / 2)
    assert sub["reasoning"]["JF"] == 100
    overall = result["summary"]["overall"]
    ref_jf = ((ref_j + 100) / 2 + (ref_f + 100) / 2) / 2
    assert overall["JF"] == pytest.approx((ref_jf + 100) / 2)
    per_exp = {(e["video_id"], e["exp_id"]): e for e in result["expressions"]}
    assert per_exp[("v0", "0")]["J"] == pytest.approx(j)
    assert per_exp[("v0", "0")]["F"] == pytest.approx(f)


def test_missing_and_bad_predictions(tmp_path, capsys):
    write_revos(tmp_path / "data", fixture_videos(), split="valid")
    write_gt_as_prediction(tmp_path / "data", tmp_path / "pred")
    import shutil

    shutil.rmtree(tmp_path / "pred" / "v1" / "0")  # missing folder: VISA scores it 0
    code, result = run_eval(tmp_path)
    assert code == 0 and result["missing_predictions"] == 1
    assert result["summary"]["subsets"]["referring"]["J"] == pytest.approx(50.0)
    # a prediction with the wrong size is an error naming the file
    write_prediction_pngs(tmp_path / "pred", "v0", "1", ["00000"], np.zeros((1, 8, 8), bool))
    code, _ = run_eval(tmp_path)
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("jaxseg: error:")
    assert "v0/1/00000.png" in err and "disagrees with the GT size" in err
    with pytest.warns(UserWarning, match="00000.png"):
        code, result = run_eval(tmp_path, "--skip-bad")
    assert code == 0 and len(result["skipped"]) == 1
    assert result["summary"]["subsets"]["reasoning"]["J"] == 0.0  # its only expression, scored 0


def test_predictions_under_annotations_folder(tmp_path):
    write_revos(tmp_path / "data", fixture_videos(), split="valid")
    write_gt_as_prediction(tmp_path / "data", tmp_path / "pred" / "Annotations")
    code, result = run_eval(tmp_path)
    assert code == 0 and result["summary"]["overall"]["JF"] == 100.0


def test_visa_raw_r_counts_255_valued_false_positives_255_times(tmp_path):
    write_revos(tmp_path / "data", fixture_videos(), split="valid")
    write_gt_as_prediction(tmp_path / "data", tmp_path / "pred")  # 0/255 PNGs
    shifted = np.stack([square(10, 12)] * 2)  # 20 px outside the 100 px target
    write_prediction_pngs(tmp_path / "pred", "v0", "0", ["00000", "00001"], shifted)
    _, binary = run_eval(tmp_path)
    _, raw = run_eval(tmp_path, "--visa-raw")
    exp = {(e["video_id"], e["exp_id"]): e for e in binary["expressions"]}
    exp_raw = {(e["video_id"], e["exp_id"]): e for e in raw["expressions"]}
    assert exp[("v0", "0")]["R"] == pytest.approx(1 - 20 / 100)
    assert exp_raw[("v0", "0")]["R"] == 0.0  # max(0, 1 - 20 * 255 / 100)
    assert exp_raw[("v0", "0")]["J"] == exp[("v0", "0")]["J"]  # J, F unaffected
    # 0/255 foreground pixels never equal the 0/1 GT: VISA's A drops by the target area
    assert exp_raw[("v1", "0")]["A"] == pytest.approx(1 - 64 / (40 * 60))
    assert exp[("v1", "0")]["A"] == 1.0
    assert raw["r_definition"] == "visa-uint8-raw"
    # with 0/1 PNGs the two definitions agree
    write_prediction_pngs(tmp_path / "pred", "v0", "0", ["00000", "00001"], shifted, value=1)
    _, raw01 = run_eval(tmp_path, "--visa-raw")
    r01 = {(e["video_id"], e["exp_id"]): e["R"] for e in raw01["expressions"]}
    assert r01[("v0", "0")] == pytest.approx(0.8)


def test_pred_that_matches_nothing_fails(tmp_path, capsys):
    """A --pred one level off (the run's eval/<tag> instead of eval/<tag>/pred) scores
    nothing: an error with exit 2 and the folder meant, not a table of zeros."""
    write_revos(tmp_path / "data", fixture_videos(), split="valid")
    write_gt_as_prediction(tmp_path / "data", tmp_path / "run" / "pred")
    rc = cli.main(["eval", "--pred", str(tmp_path / "run"), "--data", str(tmp_path / "data")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("jaxseg: error: --pred")
    assert "matches no prediction" in err and f"did you mean {tmp_path / 'run'}/pred?" in err
