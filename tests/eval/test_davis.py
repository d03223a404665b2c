"""Ref-DAVIS17 through davis2017's unsupervised protocol: merged index maps, Hungarian
matching, void pixels, object-weighted means, mean over annotators."""

import numpy as np
import pytest
from PIL import Image

from jaxseg.data.readers import read_ref_davis17
from jaxseg.data.readers.layouts import (
    ExpressionSpec,
    VideoSpec,
    write_prediction_pngs,
    write_ytvos,
)
from jaxseg.eval.aggregate import summarize
from jaxseg.eval.davis import evaluate_unsupervised, merge_masks
from jaxseg.eval.scoring import score_all

T, H, W = 3, 24, 32


def box(y0, y1, x0, x1):
    m = np.zeros((T, H, W), bool)
    m[:, y0:y1, x0:x1] = True
    return m


A, B = box(2, 10, 2, 12), box(12, 20, 15, 28)


def write_fixture(root):
    rng = np.random.default_rng(0)
    # ReferFormer order: 4 expressions per object (annotator slots 0..3), object-major
    exps = [ExpressionSpec(f"obj1 slot {a}", [1]) for a in range(4)]
    exps += [ExpressionSpec(f"obj2 slot {a}", [2]) for a in range(4)]
    video = VideoSpec("dogs", rng.integers(0, 255, (T, H, W, 3), np.uint8), {1: A, 2: B}, exps)
    write_ytvos(root, [video], split="valid")
    return read_ref_davis17(root, "valid")


def predict(pred, index, by_object):
    for r in index:
        write_prediction_pngs(
            pred,
            r.video_id,
            r.exp_id,
            r.frame_names,
            by_object[(r.extras["annotator"], int(r.target_ids[0]))],
        )


def test_merge_gives_overlaps_to_the_lowest_id():
    a, b = np.zeros((1, 2, 2), bool), np.zeros((1, 2, 2), bool)
    a[0, 0, :] = True
    b[0, :, 0] = True
    np.testing.assert_array_equal(merge_masks({2: b, 1: a}), [[[1, 1], [2, 0]]])


def test_hungarian_matching_recovers_swapped_ids(tmp_path):
    index = write_fixture(tmp_path / "d")
    empty = np.zeros_like(A)
    preds = {}
    for a in range(4):
        preds[(a, 1)], preds[(a, 2)] = A, B  # right
    preds[(1, 1)], preds[(1, 2)] = B, A  # annotator 1: the two expressions swapped
    preds[(2, 2)] = empty  # annotator 2 misses object 2
    predict(tmp_path / "p", index, preds)
    scores, _ = score_all(index, tmp_path / "p")
    by = {(s.subset, s.exp_id): s for s in scores}
    assert len(scores) == 8  # 4 annotators x 2 GT objects
    assert by[("annotator_1", "object_1")].J == 1.0 and by[("annotator_1", "object_2")].F == 1.0
    assert by[("annotator_2", "object_2")].J == 0.0 and by[("annotator_2", "object_1")].J == 1.0
    out = summarize(scores, "ref_davis17")
    assert out["subsets"]["annotator_2"]["JF"] == pytest.approx(50.0)  # objects weigh equally
    assert out["overall"]["JF"] == pytest.approx((100 + 100 + 50 + 100) / 4)


def test_void_pixels_and_object_count_from_first_frame():
    gt = np.zeros((2, 10, 10), np.uint8)
    gt[:, 2:5, 2:5] = 1
    gt[:, 0:2, 2:5] = 255  # void band above the object
    gt[1, 7:9, 7:9] = 3  # label 3 appears only after frame 0: not a GT object
    pred = np.zeros_like(gt)
    pred[:, 0:5, 2:5] = 1  # covers the object and the void band
    j, f = evaluate_unsupervised(gt, pred)
    assert j.shape == (1, 2)
    np.testing.assert_allclose(j, 1.0)
    np.testing.assert_allclose(f, 1.0)


def test_too_many_predicted_objects_is_an_error():
    gt = np.zeros((1, 4, 4), np.uint8)
    gt[0, 0, 0] = 1
    with pytest.raises(ValueError, match="allows 20"):
        evaluate_unsupervised(gt, np.full((1, 4, 4), 21, np.uint8))


def test_void_written_in_the_png_is_honoured(tmp_path):
    index = write_fixture(tmp_path / "d")
    for name in ("00000", "00001", "00002"):
        path = tmp_path / "d" / "valid" / "Annotations" / "dogs" / f"{name}.png"
        image = Image.open(path)
        labels = np.array(image)
        labels[0:2, 2:12] = 255  # void band just above object 1
        out = Image.fromarray(labels, mode="P")
        out.putpalette(image.getpalette())
        out.save(path)
    grown = box(0, 10, 2, 12)  # object 1 predicted 2 rows taller, into the void band
    predict(
        tmp_path / "p", index, {(a, o): (grown if o == 1 else B) for a in range(4) for o in (1, 2)}
    )
    scores, _ = score_all(index, tmp_path / "p")
    assert all(s.J == 1.0 and s.F == 1.0 for s in scores)
