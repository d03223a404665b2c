"""The classical stand-in on the synthetic world, GT box on GT keyframe."""

import numpy as np
import pytest

from jaxseg.data.synth import SynthConfig, generate_video
from jaxseg.eval.metrics import boundary_f, mask_to_box, region_iou
from jaxseg.segmenter.classical import ClassicalBackend, ClassicalConfig, init_mask
from jaxseg.segmenter.interface import MaskRequest, ObjectPrompt, UnknownVideoError, VideoHandle


def gt_box_requests(handle, masks):
    """One request per GT object: its box on its GT keyframe (the frame of largest area)."""
    reqs = []
    for o, gt in enumerate(masks):
        k = int(gt.sum(axis=(1, 2)).argmax())
        box = tuple(float(x) for x in mask_to_box(gt[k]))
        reqs.append(MaskRequest(handle, k, (ObjectPrompt(o, box=box),)))
    return reqs


def test_synthetic_videos_j_and_f_at_least_0_9():
    backend = ClassicalBackend()
    per_object, keyframe_only = [], []
    for index in range(8):
        video = generate_video(0, "valid", index, SynthConfig())
        handle = backend.register_video(video.frames)
        for req, res, gt in zip(
            reqs := gt_box_requests(handle, video.masks),
            backend.segment(reqs),
            video.masks,
        ):
            pred = res.object_masks[0]
            per_object.append((region_iou(gt, pred).mean() + boundary_f(gt, pred).mean()) / 2)
            still = np.zeros_like(pred)  # baseline: the keyframe's mask, nothing propagated
            still[req.keyframe] = pred[req.keyframe]
            keyframe_only.append((region_iou(gt, still).mean() + boundary_f(gt, still).mean()) / 2)
    assert len(per_object) >= 20
    jf = float(np.mean(per_object))
    assert jf >= 0.9, f"classical J&F {jf:.3f} over {len(per_object)} objects"
    assert np.mean(keyframe_only) < jf - 0.3  # the metric sees the propagation


def square_video(t=12, size=48, exit_after=None):
    """A red square moving right (optionally leaving the frame), a static blue square."""
    frames = np.full((t, size, size, 3), 100, np.uint8)
    gt = np.zeros((t, size, size), bool)
    for i in range(t):
        x = 4 + 3 * i if exit_after is None or i <= exit_after else size + 10
        gt[i, 10:20, x : x + 10] = True
        frames[i][gt[i]] = (220, 40, 40)
        frames[i, 30:40, 30:40] = (50, 90, 235)
    return frames, gt


@pytest.mark.parametrize("direction", ["forward", "backward", "both"])
def test_tracks_in_each_direction_and_keeps_objects_apart(direction):
    frames, gt = square_video()
    backend = ClassicalBackend()
    h = backend.register_video(frames)
    req = MaskRequest(
        h,
        6,
        (ObjectPrompt(1, box=(22, 10, 32, 20)), ObjectPrompt(2, box=(30, 30, 40, 40))),
        direction,
    )
    (res,) = backend.segment([req])
    assert res.backend == "classical" and res.obj_ids == (1, 2)
    cov = res.covered
    assert np.array_equal(res.object_masks[0][cov], gt[cov])
    assert not res.object_masks[:, ~cov].any()
    assert res.object_masks[1][cov][:, 30:40, 30:40].all()
    assert np.array_equal(res.union, res.object_masks[0] | res.object_masks[1])


def test_exit_gives_empty_masks_not_a_wrong_object():
    frames, gt = square_video(exit_after=7)
    backend = ClassicalBackend()
    (res,) = backend.segment(
        [MaskRequest(backend.register_video(frames), 2, (ObjectPrompt(0, box=(10, 10, 20, 20)),))]
    )
    assert np.array_equal(res.object_masks[0], gt)


def test_point_and_mask_prompts():
    frames, gt = square_video()
    cfg = ClassicalConfig()
    click = ObjectPrompt(
        0, points=np.array([[25.0, 15.0], [35.0, 35.0]]), point_labels=np.array([1, 0])
    )
    assert np.array_equal(init_mask(frames[6], click, cfg), gt[6])
    assert np.array_equal(init_mask(frames[6], ObjectPrompt(0, mask=gt[6]), cfg), gt[6])


def test_unknown_video():
    with pytest.raises(UnknownVideoError, match="register_video"):
        ClassicalBackend().segment(
            [MaskRequest(VideoHandle("x", 2, 4, 4), 0, (ObjectPrompt(0, box=(0, 0, 1, 1)),))]
        )
