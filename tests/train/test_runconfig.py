"""A run's config cannot drift: a re-run on a workdir with another config
is refused, naming the differing keys, unless --allow-config-change, which keeps a history."""

from __future__ import annotations

import json

import pytest
from ml_collections import ConfigDict

from jaxseg import cli
from jaxseg.config import load_config
from jaxseg.train.runconfig import (
    ConfigDriftError,
    as_json,
    config_diff,
    resolve_workdir,
    save_run_config,
)


def _config(**grpo):
    c = ConfigDict({"seed": 0, "grpo": {"kl_coef": 0.0, "steps": 30}, "data": {"root": "x"}})
    c.grpo.update(grpo)
    return c


def test_same_config_is_a_no_op_and_another_is_refused(tmp_path):
    assert save_run_config(tmp_path, _config()) == []
    written = (tmp_path / "config.json").read_text()
    assert save_run_config(tmp_path, _config()) == []
    with pytest.raises(ConfigDriftError) as err:
        save_run_config(tmp_path, _config(kl_coef=0.5))
    assert "grpo.kl_coef: 0.0 -> 0.5" in str(err.value)
    assert "--allow-config-change" in str(err.value)
    assert (tmp_path / "config.json").read_text() == written  # untouched
    assert not (tmp_path / "config_history").exists()


def test_a_new_mesh_is_placement_not_drift(tmp_path):
    """Resuming on another mesh (checkpoints reshard on restore) is allowed and recorded; a
    training field changed beside it is still refused."""
    c = _config()
    c.mesh = ConfigDict({"ici": [2, 2, 2]})
    save_run_config(tmp_path, c)
    c.mesh.ici = [1, 2, 4]
    assert save_run_config(tmp_path, c) == []
    assert json.loads((tmp_path / "config.json").read_text())["mesh"]["ici"] == [1, 2, 4]
    c.grpo.kl_coef = 0.5
    with pytest.raises(ConfigDriftError, match="grpo.kl_coef"):
        save_run_config(tmp_path, c)


def test_allowed_change_keeps_a_history(tmp_path):
    save_run_config(tmp_path, _config())
    changes = save_run_config(tmp_path, _config(kl_coef=0.5, steps=40), allow_change=True)
    assert changes == ["grpo.kl_coef: 0.0 -> 0.5", "grpo.steps: 30 -> 40"]
    assert json.loads((tmp_path / "config.json").read_text())["grpo"]["kl_coef"] == 0.5
    (entry,) = (tmp_path / "config_history").iterdir()
    saved = json.loads(entry.read_text())
    assert saved["changes"] == changes and saved["previous"]["grpo"]["kl_coef"] == 0.0
    # a second change adds a second entry
    save_run_config(tmp_path, _config(kl_coef=0.1, steps=40), allow_change=True)
    assert len(list((tmp_path / "config_history").iterdir())) == 2


def test_diff_names_added_and_removed_fields():
    old = {"a": {"b": 1, "c": [1, 2]}, "gone": 1}
    new = {"a": {"b": 1, "c": [1, 3]}, "new": {"x": "y"}}
    assert config_diff(old, new) == ["a.c: [1, 2] -> [1, 3]", "gone: 1 -> (absent)",
                                     'new.x: (absent) -> "y"']  # fmt: skip


def test_workdir_placeholder():
    c = resolve_workdir(ConfigDict({"data": {"root": "{workdir}/data/synth"}}), "gs://b/run/")
    assert c.data.root == "gs://b/run/data/synth"
    demo = load_config("demo")
    assert demo.data.root == "{workdir}/data/synth"  # the demo's data lives with the run


def test_train_refuses_a_changed_config_before_any_work(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    first = resolve_workdir(load_config("demo:quick"), run)
    (run / "config.json").write_text(json.dumps(as_json(first), indent=2))
    argv = ["train", "--config", "demo:quick", "--workdir", str(run), "--stages", "sft"]
    assert cli.main([*argv, "--set", "grpo.kl_coef=0.5", "--set", "seed=3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxseg: error: ") and "differing keys" in err
    assert "grpo.kl_coef: 0.01 -> 0.5" in err and "seed: 0 -> 3" in err
    assert json.loads((run / "config.json").read_text())["seed"] == 0
    assert not (run / "sft").exists() and not (run / "processor").exists()


def test_seg_refuses_a_changed_config_and_takes_allow(tmp_path, capsys, monkeypatch):
    import jaxseg.seg.train as seg_train

    run = tmp_path / "seg" / "seed0"
    run.mkdir(parents=True)
    first = resolve_workdir(load_config("o3_seg:seed=0"), run)
    (run / "config.json").write_text(json.dumps(as_json(first), indent=2))
    argv = ["seg", "--workdir", str(tmp_path / "seg"), "--seeds", "0", "--set", "sft.steps=7"]
    assert cli.main(argv) == 2
    assert "sft.steps: 180 -> 7" in capsys.readouterr().err
    # with --allow-config-change the run goes ahead (its training is stubbed here)
    monkeypatch.setattr(seg_train, "calibration_ablation", lambda *a, **k: None)
    monkeypatch.setattr("jaxseg.commands.train.ensure_data", lambda *a, **k: None)
    monkeypatch.setattr("jaxseg.commands.seg.write_report", lambda *a, **k: "")
    assert cli.main([*argv, "--allow-config-change"]) == 0
    assert json.loads((run / "config.json").read_text())["sft"]["steps"] == 7
    assert len(list((run / "config_history").iterdir())) == 1
