"""Per-benchmark scoring rules: scored frames and missing predictions (ReasonVOS skips,
Long-RVOS treats a missing frame as empty, Ref-DAVIS17 refuses), and parallel scoring."""

import shutil

import numpy as np
import pytest

from jaxseg.data.readers import read_long_rvos, read_reasonvos, read_ref_davis17, read_revos
from jaxseg.data.readers.errors import DataFormatError
from jaxseg.data.readers.layouts import (
    ExpressionSpec,
    VideoSpec,
    write_long_rvos,
    write_prediction_pngs,
    write_reasonvos,
    write_revos,
    write_ytvos,
)
from jaxseg.eval.scoring import score_all


def vids():
    rng = np.random.default_rng(0)
    m = np.zeros((4, 20, 20), bool)
    m[:2, 4:10, 4:10] = True  # present on frames 0-1 only
    return [
        VideoSpec(
            f"v{i}",
            rng.integers(0, 255, (4, 20, 20, 3), np.uint8),
            {1: m},
            [ExpressionSpec("it", [1], 0, "dynamic")],
        )
        for i in range(2)
    ]


def gt_predictions(index, pred):
    for r in index:
        write_prediction_pngs(pred, r.video_id, r.exp_id, r.frame_names, r.target_masks())


def test_reasonvos_scores_annotated_frames_and_skips_missing(tmp_path):
    write_reasonvos(tmp_path / "d", vids())
    (tmp_path / "d" / "Annotations" / "src_v0_1" / "00003.png").unlink()
    index = read_reasonvos(tmp_path / "d")
    gt_predictions(index, tmp_path / "p")
    shutil.rmtree(tmp_path / "p" / "v1")
    scores, bad = score_all(index, tmp_path / "p")
    assert [(x.video_id, x.num_frames, x.J) for x in scores] == [("v0", 3, 1.0)]
    assert not bad


def test_long_rvos_missing_frame_is_empty_and_temporal_iou(tmp_path):
    write_long_rvos(tmp_path / "d", vids())
    index = read_long_rvos(tmp_path / "d")
    gt_predictions(index, tmp_path / "p")
    (tmp_path / "p" / "v0" / "0" / "00002.png").unlink()  # GT is empty there anyway
    (tmp_path / "p" / "v1" / "0" / "00001.png").unlink()  # drops a present frame
    scores = {x.video_id: x for x in score_all(index, tmp_path / "p")[0]}
    assert scores["v0"].J == 1.0 and scores["v0"].tIoU == 1.0
    assert scores["v1"].J == pytest.approx(3 / 4)  # frame 1: J = 0, others 1
    assert scores["v1"].tIoU == pytest.approx(1 / 2) and scores["v1"].vIoU == pytest.approx(1 / 2)


def test_ref_davis17_missing_prediction_is_an_error(tmp_path):
    write_ytvos(tmp_path / "d", vids(), split="valid")
    index = read_ref_davis17(tmp_path / "d", "valid")
    gt_predictions(index, tmp_path / "p")
    shutil.rmtree(tmp_path / "p" / "v0")
    with pytest.raises(DataFormatError, match=r"v0/0: prediction: folder is missing"):
        score_all(index, tmp_path / "p")


def test_parallel_scoring_matches_serial(tmp_path):
    write_revos(tmp_path / "d", vids())
    index = read_revos(tmp_path / "d")
    for r in index:
        pred = np.roll(r.target_masks(), 2, axis=-1)
        write_prediction_pngs(tmp_path / "p", r.video_id, r.exp_id, r.frame_names, pred)
    serial = score_all(index, tmp_path / "p")[0]
    parallel = score_all(index, tmp_path / "p", workers=2)[0]
    assert [x.as_dict() for x in serial] == [x.as_dict() for x in parallel]
    assert 0 < serial[0].J < 1
