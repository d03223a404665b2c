"""`jaxseg segment`: frames in (directory or GIF), masks + overlay GIF + trace out; the
inference path (predict_episodes) needs no ground truth."""

import dataclasses
import json

import numpy as np
import pytest
from PIL import Image

from jaxseg import cli
from jaxseg.commands import segment as seg
from jaxseg.protocols.episode import predict_episodes, run_episodes
from jaxseg.protocols.registry import make_protocol
from jaxseg.protocols.scripted import OraclePolicy
from jaxseg.segmenter import make_backend
from jaxseg.train.samples import SampleSource
from jaxseg.viz import read_video


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A one-step SFT run of the quick demo config (the policy is barely trained: this tests
    the plumbing, not the answers)."""
    root = tmp_path_factory.mktemp("segment")
    args = ["train", "--config", "demo:quick", "--workdir", str(root / "run"), "--no-progress"]
    args += ["--stages", "data,sft"]
    for o in (f"data.root={root / 'data'}", "sft.steps=1", "sft.num_examples=4"):
        args += ["--set", o]
    assert cli.main(args) == 0
    return root


def test_segment_a_frame_directory(run_dir, tmp_path, capsys):
    video = run_dir / "data" / "JPEGImages" / "valid_00000"
    frames = sorted(video.glob("*.jpg"))
    out = tmp_path / "out"
    args = ["segment", "--video", str(video), "--query", "the red circle"]
    args += ["--checkpoint", str(run_dir / "run"), "--out", str(out), "--max-new-tokens", "16"]
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    masks = sorted((out / "masks").glob("*.png"))
    assert [p.stem for p in masks] == [p.stem for p in frames]
    h, w = np.asarray(Image.open(frames[0])).shape[:2]
    assert all(Image.open(p).size == (w, h) for p in masks)
    with Image.open(out / "overlay.gif") as gif:
        assert gif.n_frames == len(frames)
    assert read_video(out / "overlay.mp4").shape[0] == len(frames)
    trace = json.loads((out / "trace.json").read_text())
    assert trace["query"] == "the red circle" and trace["stage"] == "sft"
    assert trace["protocol"] == "veason" and trace["frames"] == [p.stem for p in frames]
    assert trace["turns"] and all(t["response"] in printed for t in trace["turns"])
    assert "segment_ids" not in trace["turns"][0]["policy_info"]


def test_segment_with_another_protocol(run_dir, tmp_path):
    video = run_dir / "data" / "JPEGImages" / "valid_00000"
    out = tmp_path / "o3"
    args = ["segment", "--video", str(video), "--query", "x", "--protocol", "o3"]
    args += ["--checkpoint", str(run_dir / "run"), "--out", str(out), "--max-new-tokens", "8"]
    assert cli.main(args) == 0
    assert json.loads((out / "trace.json").read_text())["protocol"] == "o3"


def test_clear_errors(run_dir, tmp_path):
    video = run_dir / "data" / "JPEGImages" / "valid_00000"
    base = ["segment", "--query", "x", "--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit, match="not a jaxseg run directory"):
        cli.main(base + ["--video", str(video), "--checkpoint", str(tmp_path)])
    with pytest.raises(SystemExit, match="no such file"):
        cli.main(base + ["--video", str(tmp_path / "nope"), "--checkpoint", str(run_dir / "run")])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit, match="no frames"):
        cli.main(base + ["--video", str(empty), "--checkpoint", str(run_dir / "run")])


def test_gif_frames_are_read(tmp_path):
    rng = np.random.default_rng(0)
    frames = [np.full((12, 16, 3), c, np.uint8) for c in (0, 80, 160, 240)]
    frames[2][3:6, 4:9] = rng.integers(0, 255, 3)
    images = [Image.fromarray(f) for f in frames]
    images[0].save(tmp_path / "v.gif", save_all=True, append_images=images[1:], duration=50)
    loaded, names = seg.load_video(tmp_path / "v.gif")
    assert loaded.shape == (4, 12, 16, 3) and names == ["00000", "00001", "00002", "00003"]
    assert np.abs(loaded.astype(int) - np.stack(frames)).max() <= 8  # GIF palette rounding


def test_unreadable_video_says_what_to_do(tmp_path):
    fake = tmp_path / "clip.mp4"
    fake.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(64))
    try:
        import imageio  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match="imageio"):
            seg.load_video(fake)
    else:
        with pytest.raises(ValueError, match="clip.mp4"):
            seg.load_video(fake)


def test_frames_of_different_sizes_are_refused(tmp_path):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((8, 9, 3), np.uint8)).save(tmp_path / "b.png")
    with pytest.raises(ValueError, match="differ in size"):
        seg.load_video(tmp_path)


@pytest.mark.parametrize("protocol", ("veason", "rcot", "o3", "revseg"))
def test_prediction_needs_no_ground_truth(run_dir, protocol):
    """The oracle (which knows the GT of its own copy) plays the same turns on a GT-free copy;
    predict_episodes gives the same turns and masks as the scored run_episodes."""
    source = SampleSource(run_dir / "data", "valid")
    samples = [source[i] for i in range(4)]
    blind = [
        dataclasses.replace(s, object_masks=np.zeros((0, *s.frames.shape[:3]), bool))
        for s in samples
    ]
    proto = make_protocol(protocol)
    backend = make_backend("classical")
    scored = run_episodes(proto, OraclePolicy(proto, samples), samples, backend=backend)
    predicted = predict_episodes(proto, OraclePolicy(proto, samples), blind, backend=backend)
    assert any(t.pred_masks.any() for t in predicted)
    for a, b in zip(scored, predicted):
        assert [t.response for t in a.turns] == [t.response for t in b.turns]
        assert b.reward == {} and "J" not in b.metrics
        np.testing.assert_array_equal(a.pred_masks, b.pred_masks)


def test_masks_and_overlay_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 255, (3, 6, 7, 3), dtype=np.uint8)
    masks = rng.random((3, 6, 7)) > 0.5
    folder = seg.write_masks(masks, ["a", "b", "c"], tmp_path)
    back = np.stack([np.asarray(Image.open(folder / f"{n}.png")) for n in "abc"])
    np.testing.assert_array_equal(back == 255, masks)
    assert set(np.unique(back)) <= {0, 255}
    final = {"keyframe": 1, "boxes": [[1, 1, 4, 4]], "points": None, "no_target": False}
    gif, mp4 = seg.write_overlays(frames, masks, tmp_path, query="q", final=final)
    with Image.open(gif) as image:  # enlarged, with a caption bar above
        assert image.n_frames == 3 and image.size[0] >= 7 * 30 and image.size[1] > 6 * 30
    assert read_video(mp4).shape[0] == 3
