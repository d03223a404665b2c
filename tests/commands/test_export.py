"""`jaxseg export` under faults: temp folder + rename, a non-empty target
refused without --overwrite (which replaces it whole), never into the run being read; plus
--dtype, generation_config.json and the model card."""

import json

import jax
import numpy as np
import pytest
from flax import nnx

from jaxseg import cli
from jaxseg.commands.export import check_target, model_card, write_export
from jaxseg.models.qwen2_5_vl import Qwen2_5_VLForConditionalGeneration, from_pretrained
from jaxseg.models.qwen2_5_vl.presets import preset_config


@pytest.fixture(scope="module")
def model():
    cfg = preset_config(
        "nano",
        vocab_size=64,
        image_token_id=60,
        video_token_id=61,
        vision_start_token_id=62,
        vision_end_token_id=63,
        eos_token_id=1,
        pad_token_id=0,
    )
    return Qwen2_5_VLForConditionalGeneration(cfg, rngs=nnx.Rngs(0))


def _params(m):
    return jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(m, nnx.Param)))


def test_export_replaces_a_folder_whole_and_refuses_without_overwrite(model, tmp_path):
    out = tmp_path / "hf"
    out.mkdir()
    # a previous, sharded export: its index would make from_pretrained read the old shards
    (out / "model.safetensors.index.json").write_text('{"weight_map": {"x": "old.safetensors"}}')
    (out / "model-00001-of-00002.safetensors").write_bytes(b"stale")
    with pytest.raises(SystemExit, match=r"--out .*hf: not empty .*--overwrite"):
        write_export(model, out, generation={"eos_token_id": 1}, card="# card\n")
    assert (out / "model-00001-of-00002.safetensors").read_bytes() == b"stale"  # untouched

    files = write_export(model, out, overwrite=True, generation={"eos_token_id": 1}, card="# c\n")
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "config.json",
        "generation_config.json",
        "model.safetensors",
    ]
    assert files == [out / "model.safetensors"]
    assert json.loads((out / "generation_config.json").read_text()) == {"eos_token_id": 1}
    loaded = from_pretrained(out)
    jax.tree.map(np.testing.assert_array_equal, _params(loaded), _params(model))
    assert [p.name for p in tmp_path.iterdir()] == ["hf"]  # no temp folder left behind


def test_a_failed_export_leaves_the_target_as_it_was(model, tmp_path, monkeypatch):
    out = tmp_path / "hf"
    write_export(model, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("jaxseg.commands.export._save_pretrained", lambda: boom)
    with pytest.raises(OSError, match="disk full"):
        write_export(model, out, overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["hf"]


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_dtype_option_casts_the_weights(model, tmp_path, dtype):
    from safetensors.numpy import load_file

    out = tmp_path / dtype
    write_export(model, out, dtype=dtype)
    tensors = load_file(out / "model.safetensors") if dtype == "float16" else None
    config = json.loads((out / "config.json").read_text())
    assert config["dtype"] == dtype
    if tensors is not None:
        assert {t.dtype for t in tensors.values()} == {np.dtype("float16")}
    assert {x.dtype for x in jax.tree.leaves(_params(model))} == {np.dtype("float32")}


def test_never_into_the_run_being_read(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    for out in (run, run / "export", tmp_path):
        with pytest.raises(SystemExit, match="the run being exported"):
            check_target(out, run, overwrite=True)
        with pytest.raises(SystemExit, match="the run being exported"):
            cli.main(["export", "--checkpoint", str(run), "--out", str(out), "--overwrite"])
    assert (run / "config.json").read_text() == "{}"
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit, match="not a folder"):
        check_target(tmp_path / "file", run, overwrite=True)
    with pytest.raises(SystemExit, match="not a jaxseg run directory"):
        cli.main(["export", "--checkpoint", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])


def test_model_card_names_the_run_and_scores():
    card = model_card(
        {
            "run": "runs/demo",
            "stage": "grpo",
            "protocol": "veason",
            "init": "random",
            "size": "tiny",
            "steps": 30,
            "seed": 0,
            "eval": {"JF": 0.076, "J": 0.07, "F": 0.082},
        },
        dtype="bfloat16",
        layout="released",
    )
    assert "protocol veason" in card and "J&F / J / F (x100): JF 7.6, J 7.0, F 8.2" in card
    assert "bfloat16" in card
