"""Small hand-made videos shared by the reader tests (each test writes its own layout)."""

import numpy as np
import pytest

from jaxseg.data.readers.layouts import ExpressionSpec, VideoSpec

T, H, W = 4, 24, 32


def box_masks(boxes):
    """boxes: per frame (y0, y1, x0, x1) or None -> [T, H, W] bool."""
    out = np.zeros((len(boxes), H, W), dtype=bool)
    for t, b in enumerate(boxes):
        if b is not None:
            y0, y1, x0, x1 = b
            out[t, y0:y1, x0:x1] = True
    return out


def make_videos(with_null: bool = True) -> list[VideoSpec]:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, size=(T, H, W, 3), dtype=np.uint8)
    a = box_masks([(2, 10, 2, 10), (3, 11, 4, 12), None, (5, 13, 8, 16)])
    b = box_masks([(14, 20, 20, 30)] * T)
    c = box_masks([None, (0, 6, 0, 6), (0, 6, 1, 7), None])
    exps = [
        ExpressionSpec("the red square", [1], 0, "static"),
        ExpressionSpec("the shape that leaves and comes back", [1], 1, "dynamic"),
        ExpressionSpec("both boxes", [1, 2], 0, "hybrid"),
    ]
    if with_null:
        exps.append(ExpressionSpec("the purple star", [], 2))
    return [
        VideoSpec("vid_a", frames, {1: a, 2: b}, exps),
        VideoSpec("vid_b", frames[::-1].copy(), {3: c}, [ExpressionSpec("the tiny one", [3], 1)]),
    ]


@pytest.fixture
def videos():
    return make_videos()


@pytest.fixture
def videos_single_target():
    vids = make_videos(with_null=False)
    vids[0].expressions = [e for e in vids[0].expressions if len(e.obj_ids) == 1]
    return vids
