import numpy as np
import pytest

from jaxseg.segmenter.interface import (
    InvalidRequestError,
    MaskRequest,
    ObjectPrompt,
    UnknownVideoError,
)
from jaxseg.segmenter.oracle import OracleBackend


def scene():
    frames = np.zeros((5, 20, 30, 3), np.uint8)
    a = np.zeros((5, 20, 30), bool)
    a[:, 2:8, 2:10] = True
    b = np.zeros((5, 20, 30), bool)
    b[:, 10:18, 15:28] = True
    b[0] = False
    return frames, {7: a, 9: b}


def test_box_matching_returns_gt_on_covered_frames():
    frames, gt = scene()
    oracle = OracleBackend(match="box")
    h = oracle.add_ground_truth(frames, gt)
    assert oracle.register_video(frames) == h
    (res,) = oracle.segment(
        [
            MaskRequest(
                h,
                2,
                (ObjectPrompt(0, box=(15, 10, 28, 18)), ObjectPrompt(1, box=(2, 2, 10, 8))),
                "forward",
            )
        ]
    )
    assert res.backend == "oracle"
    assert np.array_equal(res.object_masks[0, 2:], gt[9][2:]) and not res.object_masks[:, :2].any()
    assert np.array_equal(res.object_masks[1, 2:], gt[7][2:])
    (miss,) = oracle.segment([MaskRequest(h, 2, (ObjectPrompt(0, box=(0, 12, 6, 19)),))])
    assert not miss.object_masks.any()  # a box on nothing earns nothing


def test_obj_id_matching_and_errors():
    frames, gt = scene()
    oracle = OracleBackend(match="obj_id")
    h = oracle.add_ground_truth(frames, gt)
    (res,) = oracle.segment([MaskRequest(h, 0, (ObjectPrompt(9, box=(0, 0, 1, 1)),))])
    assert np.array_equal(res.object_masks[0], gt[9])
    with pytest.raises(InvalidRequestError, match="obj_id 3"):
        oracle.segment([MaskRequest(h, 0, (ObjectPrompt(3, box=(0, 0, 1, 1)),))])
    with pytest.raises(UnknownVideoError):
        OracleBackend().register_video(frames)
    with pytest.raises(InvalidRequestError, match=r"ground truth\[1\]"):
        oracle.add_ground_truth(frames, {1: np.zeros((5, 20, 29), bool)})
