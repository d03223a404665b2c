"""A mask prompt on a keyframe, propagated both ways through the sidecar, equals
sam2's own add_new_mask + propagate_in_video (forward, then reverse); and from jitted code."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sam2")

from jaxseg.segmenter.interface import MaskRequest, ObjectPrompt  # noqa: E402
from jaxseg.segmenter.jax_bridge import MaskBridge  # noqa: E402
from jaxseg.segmenter.sam2_backend import Sam2Config, build_predictor, preprocess_frames  # noqa: E402

KEY = 3


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _square_mask(t_index: int, h: int = 64, w: int = 80) -> np.ndarray:
    """The red square of conftest's moving_squares on frame t_index."""
    m = np.zeros((h, w), bool)
    m[10:26, 4 + 2 * t_index : 20 + 2 * t_index] = True
    return m


def _sam2_reference(config, frames, keyframe, mask, monkeypatch):
    """Plain sam2 API, frames fed through `load_video_frames`."""
    import sam2.sam2_video_predictor as svp

    pred = build_predictor(Sam2Config(**config))
    t, h, w, _ = frames.shape
    images = preprocess_frames(frames, pred.image_size)
    monkeypatch.setattr(svp, "load_video_frames", lambda **_kw: (images, h, w))
    out = np.zeros((t, h, w), bool)
    with torch.inference_mode():
        state = pred.init_state(video_path="<in-memory>")
        pred.add_new_mask(state, keyframe, 0, mask)
        for reverse in (False, True):
            for f, _, logits in pred.propagate_in_video(
                state, start_frame_idx=keyframe, reverse=reverse
            ):
                out[f] = (logits[0, 0] > 0).numpy()
    return out


def test_mask_prompt_both_directions_matches_sam2(sam2_sidecar, moving_squares, monkeypatch):
    frames = moving_squares(t=7, seed=30)
    handle = sam2_sidecar.register_video(frames)
    mask = _square_mask(KEY)
    res = sam2_sidecar.segment([MaskRequest(handle, KEY, (ObjectPrompt(5, mask=mask),), "both")])[0]
    assert res.obj_ids == (5,) and res.covered.all()
    ref = _sam2_reference(sam2_sidecar.config.backend_config, frames, KEY, mask, monkeypatch)
    np.testing.assert_array_equal(res.object_masks[0], ref)
    # sam2 outputs the prompt mask itself on the keyframe (use_mask_input_as_output_without_sam)
    got = res.object_masks[0, KEY]
    assert (got & mask).sum() / (got | mask).sum() > 0.9


def test_mask_prompts_from_jit(sam2_sidecar, moving_squares):
    frames = moving_squares(t=6, seed=31)
    bridge = MaskBridge(sam2_sidecar)
    vid = bridge.add_video(frames)
    masks = np.stack([_square_mask(KEY), np.zeros((64, 80), bool)])  # 2nd object: absent
    fn = jax.jit(lambda k, m: bridge.propagate_masks(vid, k, m))
    out = fn(jnp.int32(KEY), jnp.asarray(masks))
    direct = sam2_sidecar.segment(
        [MaskRequest(bridge.handles[vid], KEY, (ObjectPrompt(0, mask=masks[0]),))]
    )[0]
    assert bool(out.ok) and out.objects.shape == (2, 6, 64, 80)
    np.testing.assert_array_equal(np.asarray(out.objects[0]), direct.object_masks[0])
    assert not np.asarray(out.objects[1]).any()
    bad = jax.jit(lambda k, m: bridge.propagate_masks(vid, k, m))(jnp.int32(9), jnp.asarray(masks))
    assert not bool(bad.ok) and not np.asarray(bad.union).any()
