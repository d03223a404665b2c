"""Masks requested from inside jax.jit equal the direct client's."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxseg.segmenter.interface import MaskRequest, ObjectPrompt
from jaxseg.segmenter.jax_bridge import MaskBridge

BOXES = np.array([[4.0, 10.0, 20.0, 26.0], [40.0, 30.0, 75.0, 60.0]], np.float32)


def test_jit_matches_direct_client(sam2_sidecar, moving_squares):
    frames = moving_squares(t=6, seed=10)
    bridge = MaskBridge(sam2_sidecar)
    vid = bridge.add_video(frames)

    @jax.jit
    def masks_and_area(video_index, keyframe, boxes):
        out = bridge(video_index, keyframe, boxes)
        return out, out.union.sum()

    out, area = masks_and_area(jnp.int32(vid), jnp.int32(3), jnp.asarray(BOXES))
    direct = sam2_sidecar.segment(
        [
            MaskRequest(
                bridge.handles[vid],
                3,
                (ObjectPrompt(0, box=tuple(BOXES[0])), ObjectPrompt(1, box=tuple(BOXES[1]))),
            )
        ]
    )[0]
    assert bool(out.ok)
    assert out.objects.shape == (2, 6, 64, 80) and out.objects.dtype == jnp.bool_
    assert np.array_equal(np.asarray(out.objects), direct.object_masks)
    assert np.array_equal(np.asarray(out.union), direct.union)
    assert int(area) == int(direct.union.sum())


def test_vmap_is_one_batch_and_bad_inputs_are_flagged(sam2_sidecar, moving_squares):
    frames = moving_squares(t=5, seed=11)
    bridge = MaskBridge(sam2_sidecar)
    vid = bridge.add_video(frames)
    keyframes = jnp.array([2, 2, 7], jnp.int32)  # the last one is out of range
    boxes = jnp.stack([jnp.asarray(BOXES)] * 3)
    valid = jnp.array([[True, False], [True, True], [True, True]])
    before = sam2_sidecar.health()
    fn = jax.jit(jax.vmap(lambda k, b, v: bridge(vid, k, b, v)))
    out = fn(keyframes, boxes, valid)
    after = sam2_sidecar.health()
    assert after["served_requests"] - before["served_requests"] == 2  # the invalid one is not sent
    assert after["batches"] - before["batches"] == 1  # the vmapped batch is one backend call
    assert np.asarray(out.ok).tolist() == [True, True, False]
    assert not np.asarray(out.objects)[2].any() and not np.asarray(out.objects)[0, 1].any()
    single = jax.jit(lambda b: bridge(vid, 2, b))(jnp.asarray(BOXES))
    assert np.array_equal(np.asarray(out.objects)[1], np.asarray(single.objects))
    # Row 0 prompts only object 0; SAM2 tracks objects independently, so it matches row 1's.
    assert np.array_equal(np.asarray(out.objects)[0, 0], np.asarray(out.objects)[1, 0])


def test_io_callback_variant_and_shape_check(moving_squares):
    import pytest

    from jaxseg.segmenter import make_backend
    from jaxseg.segmenter.interface import InvalidRequestError

    frames = moving_squares(t=4, seed=12)
    outs = []
    for io in (False, True):
        bridge = MaskBridge(make_backend("classical"), io_callback=io)
        vid = bridge.add_video(frames)
        outs.append(
            jax.jit(lambda b, bridge=bridge, vid=vid: bridge(vid, 1, b))(jnp.asarray(BOXES))
        )
    assert np.array_equal(np.asarray(outs[0].objects), np.asarray(outs[1].objects))
    assert np.asarray(outs[0].objects).any()
    with pytest.raises(InvalidRequestError, match="bridge shape"):
        bridge.add_video(moving_squares(t=3))
