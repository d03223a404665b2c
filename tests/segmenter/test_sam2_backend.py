"""In-process checks of the SAM2 adapter (the sidecar runs the same code)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sam2")

from jaxseg.segmenter.interface import InvalidRequestError  # noqa: E402
from jaxseg.segmenter.sam2_backend import Sam2Config, build_predictor, preprocess_frames  # noqa: E402


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """build_predictor sets torch's process-wide thread count; leave it as found."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_preprocessing_matches_sam2_jpeg_loader(tmp_path):
    from PIL import Image
    from sam2.utils.misc import load_video_frames_from_jpg_images

    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(
            tmp_path / f"{i:05d}.jpg"
        )
    decoded = np.stack(
        [np.asarray(Image.open(tmp_path / f"{i:05d}.jpg").convert("RGB")) for i in range(3)]
    )
    ref, h, w = load_video_frames_from_jpg_images(
        str(tmp_path), 64, offload_video_to_cpu=True, compute_device=torch.device("cpu")
    )
    ours = preprocess_frames(decoded, 64)
    assert (h, w) == (40, 56)
    assert torch.equal(ours, ref)


def test_checkpoint_roundtrip_and_errors(tmp_path):
    a = build_predictor(Sam2Config(model="tiny", seed=0))
    path = tmp_path / "tiny.pt"
    torch.save({"model": a.state_dict()}, path)
    b = build_predictor(Sam2Config(model="tiny", seed=1, checkpoint=str(path)))
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    torch.save({"model": {"nope": torch.zeros(1)}}, tmp_path / "bad.pt")
    with pytest.raises(InvalidRequestError, match="does not match the config"):
        build_predictor(Sam2Config(model="tiny", checkpoint=str(tmp_path / "bad.pt")))
    with pytest.raises(InvalidRequestError, match="no such file"):
        build_predictor(Sam2Config(model="tiny", checkpoint=str(tmp_path / "missing.pt")))
    with pytest.raises(InvalidRequestError, match="sam2.checkpoint"):
        build_predictor(Sam2Config(model="s"))
    with pytest.raises(InvalidRequestError, match="sam2.model"):
        Sam2Config(model="huge").hydra()
    with pytest.raises(InvalidRequestError, match="image_size"):
        Sam2Config(model="tiny", image_size=100).hydra()


def test_feature_cache_is_exact_and_skips_the_encoder():
    from jaxseg.segmenter.interface import MaskRequest, ObjectPrompt
    from jaxseg.segmenter.sam2_backend import Sam2Backend

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (5, 48, 64, 3), dtype=np.uint8)
    plain = Sam2Backend(Sam2Config(model="tiny", image_size=128, num_threads=1))
    cached = Sam2Backend(
        Sam2Config(model="tiny", image_size=128, num_threads=1, feature_cache_frames=16)
    )
    calls = []
    encoder = cached.predictor.forward_image
    cached.predictor.forward_image = lambda img: calls.append(1) or encoder(img)
    reqs = lambda h: [  # noqa: E731 - two keyframes: two groups, same clip
        MaskRequest(h, k, (ObjectPrompt(0, box=(5.0, 5.0, 30.0, 30.0)),)) for k in (1, 3)
    ]
    want = plain.segment(reqs(plain.register_video(frames)))
    got = cached.segment(reqs(cached.register_video(frames)))
    for a, b in zip(want, got):
        assert np.array_equal(a.object_masks, b.object_masks) and b.covered.all()
    assert len(calls) == 5  # each frame encoded once across both groups (plain: 10 + warm-up)
