"""`jaxseg data synth` and `jaxseg data show` end to end (small sizes)."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from jaxseg import cli
from jaxseg.data.synth.show import pick_examples, render_example_page


def test_cli_synth_then_show(tmp_path, capsys):
    out = tmp_path / "bench"
    args = ["data", "synth", "--out", str(out), "--videos", "3", "--valid-videos", "2"]
    args += ["--seed", "1", "--frames", "8", "--size", "48", "--queries", "3", "--quiet"]
    assert cli.main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["splits"]["train"]["videos"] == 3
    assert summary["splits"]["valid"]["videos"] == 2
    assert summary["videos_per_second"] > 0
    meta = json.loads((out / "meta_expressions_valid_.json").read_text())["videos"]
    assert all(len(v["frames"]) == 8 and v["height"] == 48 for v in meta.values())
    # a second run into the same folder needs --overwrite
    with pytest.raises(SystemExit, match="--overwrite"):
        cli.main(args)
    assert cli.main(args + ["--overwrite"]) == 0
    capsys.readouterr()

    page = tmp_path / "page.png"
    assert cli.main(["data", "show", "--data", str(out), "--out", str(page), "--rows", "3"]) == 0
    with Image.open(page) as im:
        assert im.size[0] > 400 and im.size[1] > 150


def test_cli_rejects_bad_values(tmp_path):
    with pytest.raises(SystemExit, match="frames"):
        cli.main(["data", "synth", "--out", str(tmp_path / "x"), "--videos", "1", "--frames", "3"])
    with pytest.raises(SystemExit, match="does not exist"):
        cli.main(["data", "show", "--data", str(tmp_path), "--out", str(tmp_path / "p.png")])


def test_pick_examples_cycles_types():
    meta = {
        "v": {
            "expressions": {
                "0": {"type_id": 0},
                "1": {"type_id": 0},
                "2": {"type_id": 1},
                "3": {"type_id": 2},
            }
        }
    }
    picked = pick_examples(meta, rows=3)
    assert [meta["v"]["expressions"][k]["type_id"] for _, k in picked] == [0, 1, 2]


def test_show_renders_the_session_benchmark(small_benchmark, tmp_path):
    out, _ = small_benchmark
    page = render_example_page(out, tmp_path / "p.png", split="train", rows=2, cols=3)
    assert page.stat().st_size > 1000


def test_cli_tokenizer(tmp_path, capsys):
    from transformers import AutoTokenizer

    assert cli.main(["data", "tokenizer", "--out", str(tmp_path / "proc")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["vocab_size"] < 1024
    tok = AutoTokenizer.from_pretrained(tmp_path / "proc")
    assert tok.convert_tokens_to_ids("<|image_pad|>") == info["image_token_id"]
