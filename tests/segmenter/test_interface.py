import numpy as np
import pytest

from jaxseg.segmenter.interface import (
    InvalidRequestError,
    MaskRequest,
    ObjectPrompt,
    VideoHandle,
    covered_frames,
    handle_for,
    validate_request,
    video_id_of,
)

H = VideoHandle("v", 6, 32, 40)


def test_video_id_is_a_content_hash():
    a = np.zeros((2, 4, 4, 3), np.uint8)
    b = a.copy()
    assert video_id_of(a) == video_id_of(b)
    b[1, 2, 3, 0] = 1
    assert video_id_of(a) != video_id_of(b)
    assert video_id_of(a) != video_id_of(a.reshape(2, 2, 8, 3))


@pytest.mark.parametrize(
    ("direction", "expected"),
    [("forward", [0, 0, 1, 1, 1]), ("backward", [1, 1, 1, 0, 0]), ("both", [1] * 5)],
)
def test_covered_frames(direction, expected):
    assert covered_frames(5, 2, direction).tolist() == [bool(e) for e in expected]


@pytest.mark.parametrize(
    ("req", "field"),
    [
        (MaskRequest(H, 6, (ObjectPrompt(0, box=(0, 0, 5, 5)),)), "request.keyframe"),
        (MaskRequest(H, 0, (ObjectPrompt(0, box=(0, 0, 5, 5)),), "sideways"), "request.direction"),
        (MaskRequest(H, 0, (ObjectPrompt(0),)), "request.prompts[0]"),
        (MaskRequest(H, 0, (ObjectPrompt(0, box=(5, 0, 5, 5)),)), "request.prompts[0].box"),
        (
            MaskRequest(
                H, 0, (ObjectPrompt(1, box=(0, 0, 5, 5)), ObjectPrompt(1, box=(0, 0, 5, 5)))
            ),
            "request.prompts[1].obj_id",
        ),
        (
            MaskRequest(
                H, 0, (ObjectPrompt(0, points=np.zeros((2, 2)), point_labels=np.array([1, 2])),)
            ),
            "request.prompts[0].point_labels",
        ),
        (
            MaskRequest(H, 0, (ObjectPrompt(0, mask=np.zeros((32, 41), bool)),)),
            "request.prompts[0].mask",
        ),
    ],
)
def test_validation_names_the_field(req, field):
    with pytest.raises(InvalidRequestError, match=field.replace("[", r"\[").replace("]", r"\]")):
        validate_request(req)


def test_handle_for_rejects_bad_frames():
    with pytest.raises(InvalidRequestError, match="dtype uint8"):
        handle_for(np.zeros((2, 4, 4, 3), np.float32))
    with pytest.raises(InvalidRequestError, match=r"\[T, H, W, 3\]"):
        handle_for(np.zeros((4, 4, 3), np.uint8))
