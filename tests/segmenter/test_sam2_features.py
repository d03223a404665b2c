"""The sidecar's image-features request (tiny random SAM2, 256 px, CPU)
returns what sam2 hands `_forward_sam_heads` on a memory-free frame, and those features give
the same masks through torch's decoder and through jaxseg.models.sam2."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sam2")

from flax import nnx  # noqa: E402

from jaxseg.models.sam2 import apply_object_score, from_torch_weights, hiera_tiny  # noqa: E402
from jaxseg.segmenter.cache import CachingBackend  # noqa: E402
from jaxseg.segmenter.interface import InvalidRequestError, UnknownVideoError, VideoHandle  # noqa: E402
from jaxseg.segmenter.jax_bridge import FeatureBridge  # noqa: E402
from jaxseg.segmenter.sam2_backend import (  # noqa: E402
    Sam2Backend,
    Sam2Config,
    build_predictor,
    preprocess_frames,
)

TOL = 1e-4


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def reference(sam2_sidecar):
    """The sidecar's model rebuilt in this process (same seed -> same random weights)."""
    n = torch.get_num_threads()
    pred = build_predictor(Sam2Config(**sam2_sidecar.config.backend_config))
    torch.set_num_threads(n)
    return pred


def no_point(b):
    """`_forward_sam_heads`' prompt when there is none: a (0, 0) point labelled -1."""
    return torch.zeros(b, 1, 2), -torch.ones(b, 1, dtype=torch.int32)


def _reference_features(pred, frames, idx):
    """image predictor's set_image recipe on the video predictor's preprocessing."""
    images = preprocess_frames(frames, pred.image_size)[idx]
    with torch.no_grad():
        backbone = pred.forward_image(images)
        _, feats, _, sizes = pred._prepare_backbone_features(backbone)  # noqa: SLF001
        feats[-1] = feats[-1] + pred.no_mem_embed
        maps = [
            x.permute(1, 2, 0).reshape(x.shape[1], x.shape[2], *s) for x, s in zip(feats, sizes)
        ]
    return [m.numpy() for m in maps]  # hr0, hr1, embed


def test_features_equal_sam2_and_decode_identically(sam2_sidecar, moving_squares, reference):
    frames = moving_squares(t=6, seed=20)
    handle = sam2_sidecar.register_video(frames)
    feats = sam2_sidecar.image_features(handle, [4, 1])
    assert feats.image_embed.shape == (2, 256, 16, 16)
    assert feats.high_res_0.shape == (2, 32, 64, 64) and feats.high_res_1.shape == (2, 64, 32, 32)
    assert not feats.cached.any()
    again = sam2_sidecar.image_features(handle, [1])
    assert again.cached.all() and np.array_equal(again.image_embed[0], feats.image_embed[1])

    hr0, hr1, embed = _reference_features(reference, frames, [4, 1])
    np.testing.assert_allclose(feats.image_embed, embed, atol=1e-5, rtol=0)
    np.testing.assert_allclose(feats.high_res_0, hr0, atol=1e-5, rtol=0)
    np.testing.assert_allclose(feats.high_res_1, hr1, atol=1e-5, rtol=0)

    weights = sam2_sidecar.decoder_state_dict()
    ref_sd = reference.state_dict()
    assert all(np.array_equal(v, ref_sd[k].numpy()) for k, v in weights.items())
    ours = from_torch_weights(hiera_tiny(256), weights)
    # a whole SAM2 state dict (image encoder, memory, object pointers...) loads the same heads
    whole = from_torch_weights(hiera_tiny(256), reference.state_dict())
    assert set(weights) < set(reference.state_dict())
    assert all(
        np.array_equal(a, b)
        for a, b in zip(
            jax.tree.leaves(nnx.state(whole)), jax.tree.leaves(nnx.state(ours)), strict=True
        )
    )

    t = torch.from_numpy
    e, h = jnp.asarray(feats.image_embed), [jnp.asarray(x) for x in feats.high_res_feats]
    points = np.array([[[40.0, 60.0]], [[200.0, 150.0]]], np.float32)  # SAM2-input pixels
    labels = np.ones((2, 1), np.int32)
    pe, md = reference.sam_prompt_encoder, reference.sam_mask_decoder
    opened = False
    for kwargs in ({}, {"point_inputs": {"point_coords": t(points), "point_labels": t(labels)}}):
        for multimask in (False, True):
            with torch.no_grad():
                low, _, ious, *_, obj = reference._forward_sam_heads(  # noqa: SLF001
                    t(feats.image_embed),
                    high_res_features=[t(x) for x in feats.high_res_feats],
                    multimask_output=multimask,
                    **kwargs,
                )
                # the decoder's raw logits too: where obj <= 0 sam2 overwrites them with -1024
                pts_t = (t(points), t(labels)) if kwargs else no_point(2)
                sparse, dense = pe(points=pts_t, boxes=None, masks=None)
                raw = md(
                    t(feats.image_embed),
                    pe.get_dense_pe(),
                    sparse,
                    dense,
                    multimask,
                    False,
                    [t(x) for x in feats.high_res_feats],
                )[0].numpy()
            pts = None if not kwargs else (jnp.asarray(points), jnp.asarray(labels))
            masks, iou, obj_ours = ours(e, h, points=pts, multimask=multimask)
            np.testing.assert_allclose(masks, raw, atol=TOL, rtol=0)
            low_ours = np.asarray(apply_object_score(masks, obj_ours))
            np.testing.assert_allclose(low_ours, low.numpy(), atol=TOL, rtol=0)
            np.testing.assert_allclose(iou, ious.numpy(), atol=TOL, rtol=0)
            np.testing.assert_allclose(obj_ours, obj.numpy(), atol=TOL, rtol=0)
            decided = np.abs(low.numpy()) > TOL
            assert np.array_equal((low_ours > 0)[decided], (low.numpy() > 0)[decided])
            opened |= bool((obj.numpy() > 0).any())
    assert opened  # at least one case where sam2 keeps the decoder's mask

    # the [SEG] injection at SAM2 size: torch heads + Sa2VA's concat vs extra_tokens
    seg = np.random.default_rng(0).normal(size=(2, 1, 256)).astype(np.float32)
    with torch.no_grad():
        sparse, dense = pe(points=no_point(2), boxes=None, masks=None)
        ref_masks, ref_iou, _, ref_obj = md(
            t(feats.image_embed),
            pe.get_dense_pe(),
            torch.cat([sparse, t(seg)], 1),
            dense,
            False,
            False,
            [t(x) for x in feats.high_res_feats],
        )
    masks, iou, obj = ours(e, h, extra_tokens=jnp.asarray(seg))
    np.testing.assert_allclose(masks, ref_masks.numpy(), atol=TOL, rtol=0)
    np.testing.assert_allclose(iou, ref_iou.numpy(), atol=TOL, rtol=0)
    np.testing.assert_allclose(obj, ref_obj.numpy(), atol=TOL, rtol=0)


def test_feature_bridge_under_jit_and_vmap(sam2_sidecar, moving_squares):
    frames = moving_squares(t=5, seed=21)
    # make_backend("sam2") hands out the client inside a CachingBackend: the bridge unwraps it
    bridge = FeatureBridge(CachingBackend(sam2_sidecar), channels=256, embed_size=16)
    assert bridge.backend is sam2_sidecar
    vid = bridge.add_video(frames)
    fn = jax.jit(jax.vmap(lambda f: bridge(vid, f)))
    out = fn(jnp.array([3, 0, 9], jnp.int32))  # 9 is out of range
    direct = sam2_sidecar.image_features(bridge.handles[vid], [3, 0])
    assert np.asarray(out.ok).tolist() == [True, True, False]
    np.testing.assert_array_equal(np.asarray(out.image_embed[:2]), direct.image_embed)
    np.testing.assert_array_equal(np.asarray(out.high_res_1[:2]), direct.high_res_1)
    assert not np.asarray(out.high_res_0[2]).any()


def test_backend_cache_eviction_and_errors(sam2_sidecar, moving_squares):
    config = {**sam2_sidecar.config.backend_config, "embed_cache_frames": 2}
    backend = Sam2Backend(Sam2Config(**config))
    frames = moving_squares(t=4, seed=22)
    handle = backend.register_video(frames)
    assert backend.image_features(handle, [0, 1, 2]).cached.tolist() == [False] * 3
    assert backend.image_features(handle, [2, 0]).cached.tolist() == [True, False]  # 0 evicted
    with pytest.raises(InvalidRequestError, match=r"features.frames\[1\]: 4 is not a frame"):
        backend.image_features(handle, [0, 4])
    with pytest.raises(InvalidRequestError, match="non-empty list"):
        backend.image_features(handle, [])
    with pytest.raises(UnknownVideoError):
        backend.image_features(VideoHandle("nope", 4, 64, 80), [0])


def test_client_errors(sam2_sidecar, moving_squares):
    handle = sam2_sidecar.register_video(moving_squares(t=3, seed=23))
    with pytest.raises(InvalidRequestError, match=r"features.frames\[0\]: -1"):
        sam2_sidecar.image_features(handle, [-1])
    with pytest.raises(UnknownVideoError):
        sam2_sidecar.image_features(VideoHandle("nope", 3, 64, 80), [0])
    with pytest.raises(InvalidRequestError, match="image_features"):
        FeatureBridge(object(), 256, 16)


def test_server_reports_features_on_a_backend_without_sam2(moving_squares):
    """The sidecar answers a `features` op on the classical backend with a named error."""
    from jaxseg.segmenter import transport as tp
    from jaxseg.segmenter.classical import ClassicalBackend, ClassicalConfig
    from jaxseg.segmenter.sidecar_server import SidecarServer, _Job

    class Conn:
        def reply(self, header, arrays=None):
            self.header, self.arrays = header, arrays

    backend = ClassicalBackend(ClassicalConfig())
    handle = backend.register_video(moving_squares(t=3, seed=24))
    server, conn = SidecarServer(backend), Conn()
    header = {"op": "features", "id": 7, "video": tp.handle_to_wire(handle), "frames": [0]}
    server._sam2_extra(_Job(conn, header, {}, 0.0))  # noqa: SLF001
    assert conn.header["id"] == 7 and not conn.header["ok"]
    assert conn.header["error"]["type"] == "InvalidRequestError"
    assert "no SAM2 image encoder" in conn.header["error"]["message"]
