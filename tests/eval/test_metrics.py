"""J / F / R / box metrics: hand-computed cases, a per-frame transcription of the DAVIS
reference (`db_eval_boundary` with binary dilation), and properties."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from jaxseg.eval import metrics as M

H, W = 480, 854  # DAVIS 480p


def box(top, left, height=100, width=200, shape=(H, W)):
    m = np.zeros(shape, dtype=bool)
    m[top : top + height, left : left + width] = True
    return m


GT = box(100, 100)


# --- a direct, per-frame transcription of davis2017-evaluation metrics.py --------------------
def seg2bmap_reference(seg):
    seg = seg.astype(bool)
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = seg ^ e | seg ^ s | seg ^ se
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = 0
    return b


def f_measure_reference(pred, gt, bound_th=0.008):
    bound_pix = bound_th if bound_th >= 1 else np.ceil(bound_th * np.linalg.norm(pred.shape))
    r = int(bound_pix)
    y, x = np.mgrid[-r : r + 1, -r : r + 1]
    selem = x**2 + y**2 <= r**2
    fg_b, gt_b = seg2bmap_reference(pred), seg2bmap_reference(gt)
    fg_dil = ndimage.binary_dilation(fg_b, structure=selem)
    gt_dil = ndimage.binary_dilation(gt_b, structure=selem)
    n_fg, n_gt = fg_b.sum(), gt_b.sum()
    if n_fg == 0 and n_gt > 0:
        p, rc = 1, 0
    elif n_fg > 0 and n_gt == 0:
        p, rc = 0, 1
    elif n_fg == 0 and n_gt == 0:
        p, rc = 1, 1
    else:
        p, rc = (fg_b & gt_dil).sum() / n_fg, (gt_b & fg_dil).sum() / n_gt
    return 0.0 if p + rc == 0 else 2 * p * rc / (p + rc)


# --- hand-computed cases ---------------------------------------------------------------------
def test_tolerance_and_disk():
    assert M.bound_pixels(480, 854) == 8  # ceil(0.008 * 979.65)
    assert M.bound_pixels(720, 1280) == 12
    assert M.bound_pixels(1080, 1920) == 18
    assert M.bound_pixels(10, 10, bound_th=3) == 3
    assert M.disk(8).sum() == 197  # lattice points with x^2 + y^2 <= 64
    assert M.disk(1).sum() == 5


def test_box_boundary_has_600_pixels():
    # inner bottom row 200 + inner right column 99 more + outer top row 200 + outer corner 1
    # + outer left column 100 = 600 (seg2bmap marks the pixel *before* each change)
    assert M.boundary_map(GT).sum() == 600


def test_box_shifted_down_10px():
    pred = box(110, 100)
    # J: overlap 90 rows x 200 cols, union 110 x 200
    assert M.region_iou(GT, pred) == pytest.approx(18000 / 22000)
    # F: of the 600 predicted boundary px, those within 8 px of the GT boundary are
    # 9 + 9 on the top edge (near the two vertical GT edges), 90 + 8 on each vertical edge,
    # none on the bottom edge (10 px away): 18 + 98 + 98 = 214; recall is symmetric.
    assert M.boundary_f(GT, pred) == pytest.approx(214 / 600)


def test_box_shifted_down_5px():
    pred = box(105, 100)
    assert M.region_iou(GT, pred) == pytest.approx(19000 / 21000)
    assert M.boundary_f(GT, pred) == pytest.approx(1.0)  # every edge within 8 px


def test_empty_cases():
    empty = np.zeros((H, W), dtype=bool)
    assert M.region_iou(empty, empty) == 1 and M.boundary_f(empty, empty) == 1
    assert M.region_iou(GT, empty) == 0 and M.boundary_f(GT, empty) == 0
    assert M.region_iou(empty, GT) == 0 and M.boundary_f(empty, GT) == 0


def test_four_frame_clip_all_frame_protocol():
    """Worked with the unmodified DAVIS / VISA metric files: GT [box, box, -, -], prediction
    [box+10, box, -, box+10]."""
    empty = np.zeros((H, W), dtype=bool)
    gt = np.stack([GT, GT, empty, empty])
    pred = np.stack([box(110, 100), GT, empty, box(110, 100)])
    j, f = M.region_iou(gt, pred), M.boundary_f(gt, pred)
    np.testing.assert_allclose(j, [18000 / 22000, 1, 1, 0])
    np.testing.assert_allclose(f, [214 / 600, 1, 1, 0])
    assert j.mean() == pytest.approx(0.7045, abs=1e-4)
    assert f.mean() == pytest.approx(0.5892, abs=1e-4)
    assert M.j_and_f(j.mean(), f.mean()) == pytest.approx(0.6469, abs=1e-4)
    # robustness with foreground = the GT box on every frame: the 2000 px spilling below
    # the box on frame 0 -> 1 - 2000/20000; frame 3 spills 20000 px -> 0
    fg = np.stack([GT] * 4)
    np.testing.assert_allclose(M.robustness(gt, pred, fg), [0.9, 1, 1, 0], atol=1e-6)
    # VISA on 0/255 PNG values counts every false positive 255 times
    r_visa = M.robustness_visa_uint8(gt.astype(np.uint8), pred.astype(np.uint8) * 255, fg)
    np.testing.assert_allclose(r_visa, [0, 1, 1, 0], atol=1e-6)
    np.testing.assert_allclose(
        M.robustness_visa_uint8(gt.astype(np.uint8), pred.astype(np.uint8), fg),
        [0.9, 1, 1, 0],
        atol=1e-6,
    )


def test_void_pixels_are_ignored():
    """davis2017-evaluation pytest `test_void_masks`: a 50x50 square GT, the prediction adds
    50 rows above it, and those rows are void -> J = F = 1."""
    gt = np.zeros((200, 200), dtype=bool)
    gt[100:150, 50:100] = True
    pred = gt.copy()
    pred[50:100, 50:100] = True
    void = np.zeros_like(gt)
    void[50:100, 50:100] = True
    assert M.region_iou(gt, pred, void) == 1
    assert M.boundary_f(gt, pred, void) == 1


def test_box_iou_and_mask_to_box():
    a = np.array([[0, 0, 10, 10], [5, 5, 15, 15]])
    b = np.array([[0, 0, 10, 10], [10, 10, 20, 20], [0, 0, 0, 0]])
    iou = M.box_iou(a, b)
    assert iou.shape == (2, 3)
    np.testing.assert_allclose(iou[0], [1, 0, 0])
    np.testing.assert_allclose(iou[1], [25 / 175, 25 / 175, 0])
    masks = np.stack([box(2, 3, 4, 5, (10, 12)), np.zeros((10, 12), bool)])
    np.testing.assert_array_equal(M.mask_to_box(masks), [[3, 2, 7, 5], [0, 0, 0, 0]])


def test_keyframe_area_ratio_and_temporal_iou():
    areas = [0, 10, 40, 20, 5]
    assert M.keyframe_area_ratio(areas, 2, [0, 2, 4]) == 1.0
    assert M.keyframe_area_ratio(areas, 4, [0, 2, 4]) == pytest.approx(5 / 40)
    assert M.keyframe_area_ratio(areas, 3, [0, 2, 4]) == 0.0  # not a sampled frame
    assert M.keyframe_area_ratio([0, 0], 0, [0, 1]) == 0.0
    on = np.ones((2, 2), bool)
    off = np.zeros((2, 2), bool)
    gt = np.stack([on, on, off, off])
    pred = np.stack([on, off, on, off])
    j = M.region_iou(gt, pred)
    assert M.temporal_iou(gt, pred, j) == pytest.approx((1 / 3, 1 / 3))
    assert M.temporal_iou(np.stack([off]), np.stack([off]), [1.0]) == (1.0, 1.0)


# --- parity with the reference transcription and properties -------------------------------
masks_2d = st.integers(0, 2**32 - 1).map(
    lambda seed: np.random.default_rng(seed).random((3, 23, 37))
)


@settings(max_examples=40, deadline=None)
@given(masks_2d, st.floats(0.2, 0.8), st.sampled_from([0.008, 0.05, 2]))
def test_boundary_f_matches_davis_reference(noise, level, bound_th):
    gt = ndimage.uniform_filter(noise, 5) > level * 0.9 + 0.05
    pred = noise > level
    ours = M.boundary_f(gt, pred, bound_th=bound_th)
    ref = [f_measure_reference(p, g, bound_th) for p, g in zip(pred, gt)]
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(M.boundary_map(gt), [seg2bmap_reference(g) for g in gt])


@settings(max_examples=40, deadline=None)
@given(masks_2d, st.floats(0.1, 0.9))
def test_j_and_f_properties(noise, level):
    a, b = noise > level, noise[::-1] > level
    j, f = M.region_iou(a, b), M.boundary_f(a, b)
    assert np.all((0 <= j) & (j <= 1)) and np.all((0 <= f) & (f <= 1))
    np.testing.assert_allclose(j, M.region_iou(b, a))
    np.testing.assert_allclose(f, M.boundary_f(b, a))  # P and R swap, F is symmetric
    assert np.all(M.region_iou(a, a) == 1) and np.all(M.boundary_f(a, a) == 1)
    fg = a | b
    r = M.robustness(a, b, fg)
    assert np.all((0 <= r) & (r <= 1))
    assert np.all(M.robustness(a, a & b, fg) == 1)  # no pixel outside the target


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        M.region_iou(np.zeros((2, 3)), np.zeros((3, 2)))


@settings(max_examples=30, deadline=None)
@given(masks_2d, st.floats(0.3, 0.95), st.integers(1, 9))
def test_count_within_equals_disk_dilation(noise, level, radius):
    src, dst = noise > level, noise[:, ::-1] > level
    expected = (src & M.dilate_disk(dst, radius)).sum(axis=(-2, -1))
    np.testing.assert_array_equal(M.count_within(src, dst, radius), expected)
    # dilate_disk itself against scipy's binary dilation with the disk structure
    ref = [ndimage.binary_dilation(d, structure=M.disk(radius)) for d in dst]
    np.testing.assert_array_equal(M.dilate_disk(dst, radius), ref)
