import numpy as np
import pytest

from jaxseg.rewards.mask_iou import mask_iou, per_frame_iou


def test_hand_computed():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[:2, :2] = True  # 4 pixels
    b[:2, :] = True  # 8 pixels, contains a -> 4 / 8
    assert mask_iou(a, b) == 0.5
    assert mask_iou(np.zeros((2, 2)), np.zeros((2, 2))) == 1.0  # both empty
    assert mask_iou(a, np.zeros((4, 4))) == 0.0
    np.testing.assert_allclose(
        per_frame_iou(np.stack([a, a, a]), np.stack([b, a, np.zeros_like(a)])), [0.5, 1.0, 0.0]
    )


def test_shape_mismatch():
    with pytest.raises(ValueError, match="differ"):
        mask_iou(np.zeros((2, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"\[T, H, W\]"):
        per_frame_iou(np.zeros((2, 2)), np.zeros((2, 2)))
