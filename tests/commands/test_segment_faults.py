"""`jaxseg segment` under bad input: a truncated or non-GIF file is a
one-line error with the real cause; an --out holding an earlier run's masks is refused
without --overwrite, and --overwrite leaves no stale mask."""

import numpy as np
import pytest
from PIL import Image

from jaxseg import cli
from jaxseg.commands import segment as seg


@pytest.fixture
def gif_bytes(tmp_path):
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)) for _ in range(6)]
    images[0].save(tmp_path / "ok.gif", save_all=True, append_images=images[1:], duration=50)
    return (tmp_path / "ok.gif").read_bytes()


@pytest.fixture
def fake_run(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    return run


@pytest.mark.parametrize(
    "cut, says",
    [
        (0.5, r"truncated or corrupt GIF file: frame \d cannot be decoded \(image file is trunc"),
        (0.015, r"not a readable GIF file \(no image signature; it starts with b'GIF89a"),
        (None, r"not a readable GIF file \(no image signature; it starts with b'hello wo"),
    ],
    ids=["truncated-mid-frame", "truncated-header", "not-a-gif"],
)
def test_bad_gif_is_a_one_line_error_with_the_cause(tmp_path, gif_bytes, fake_run, cut, says):
    bad = tmp_path / "clip.gif"
    bad.write_bytes(
        b"hello world, not a gif" if cut is None else gif_bytes[: int(len(gif_bytes) * cut)]
    )
    with pytest.raises(ValueError, match=says):
        seg.load_video(bad)
    args = ["segment", "--video", str(bad), "--query", "x", "--checkpoint", str(fake_run)]
    with pytest.raises(SystemExit) as err:
        cli.main(args + ["--out", str(tmp_path / "o")])
    message = str(err.value.code)
    assert message.startswith(f"jaxseg segment: --video {bad}: ") and "\n" not in message


def test_out_with_an_earlier_runs_masks_is_refused_then_replaced(tmp_path, fake_run):
    out = tmp_path / "out"
    (out / "masks").mkdir(parents=True)
    for i in range(5):  # an earlier, longer video
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(out / "masks" / f"{i:05d}.png")
    (out / "trace.json").write_text("{}")
    (out / "notes.txt").write_text("mine")
    args = ["segment", "--video", str(tmp_path / "nope"), "--query", "x"]
    args += ["--checkpoint", str(fake_run), "--out", str(out)]
    with pytest.raises(SystemExit, match=r"already holds masks, trace.json of an earlier run"):
        cli.main(args)
    assert len(list((out / "masks").iterdir())) == 5  # nothing touched
    seg.check_out(out, overwrite=True)  # --overwrite passes the check ...
    seg.clear_outputs(out)  # ... and the outputs go before the new ones are written
    seg.write_masks(np.zeros((2, 4, 4), bool), ["00000", "00001"], out)
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["00000.png", "00001.png"]
    assert (out / "notes.txt").read_text() == "mine" and not (out / "trace.json").exists()
