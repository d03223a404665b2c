"""In-process checks of the SAM2 adapter (the sidecar runs the same code)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sam2")

from jaxseg.segmenter.interface import InvalidRequestError  # noqa: E402
from jaxseg.segmenter.sam2_backend import Sam2Config, build_predictor, preprocess_frames  # noqa: E402


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
