"""One override syntax, clear errors.

Every command that takes config overrides takes the same repeatable `--set KEY=VALUE`; a
mistake a user can fix ends as one `jaxseg: error: ...` line with exit 2 and, where a name
is close to a known one, a "did you mean"; help shows defaults and choices.
"""

from __future__ import annotations

import sys
import textwrap

import pytest

from jaxseg import cli
from jaxseg.config import did_you_mean


def _err(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("jaxseg: error: "), err
    return err


def test_unknown_command(capsys):
    assert cli.main(["trian"]) == 2
    err = capsys.readouterr().err
    assert "jaxseg: error: unknown command 'trian' (did you mean 'train'?)" in err


def test_did_you_mean():
    assert did_you_mean("grpo.kl_coeff", ["grpo.kl_coef", "grpo.steps"]) == (
        " (did you mean 'grpo.kl_coef'?)"
    )
    assert did_you_mean("zzz", ["grpo.kl_coef"]) == ""


def test_unknown_key_config_and_protocol(tmp_path, capsys):
    base = ["train", "--workdir", str(tmp_path / "run"), "--stages", "sft"]
    assert cli.main([*base, "--set", "grpo.kl_coeff=0.5"]) == 2
    assert "did you mean 'grpo.kl_coef'?" in _err(capsys)
    assert cli.main([*base, "--config", "dmeo"]) == 2
    assert "did you mean 'demo'?" in _err(capsys)
    assert cli.main([*base, "--config", "demo:quik"]) == 2
    assert "did you mean 'quick'?" in _err(capsys)
    assert cli.main([*base, "--set", "protocol.name=vason"]) == 2
    assert "did you mean 'veason'?" in _err(capsys)
    assert cli.main([*base, "--stages", "sft,evl"]) == 2
    assert "did you mean 'eval'?" in _err(capsys)
    assert not (tmp_path / "run").exists()  # nothing was started


def test_one_remat_field(capsys):
    """plan reads model.remat, the field the trainer runs with; the old train.remat is named."""
    argv = ["plan", "--config", "qwen2_5_vl_3b_grpo", "--topology", "v5p-32"]
    assert cli.main([*argv, "--set", "train.remat=full"]) == 2
    assert "did you mean 'model.remat'?" in _err(capsys)


def test_episodes_keeps_every_set_and_names_a_bad_field(capsys):
    # two --set: the first is not dropped (it is the one that is wrong here)
    rc = cli.main(
        ["episodes", "--protocol", "veason", "--set", "num_framez=4", "--set", "max_turns=1"]
    )
    assert rc == 2
    assert "did you mean 'num_frames'?" in _err(capsys)
    assert cli.main(["episodes", "--protocol", "veason", "--set", "image_size"]) == 2
    assert "KEY=VALUE" in _err(capsys)


def test_choices_and_defaults_in_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["demo", "--protocol", "vason"])
    assert exit_.value.code == 2
    assert "invalid choice: 'vason'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    out = capsys.readouterr().out
    assert "(default: demo)" in out and "--allow-config-change" in out
    for command in ("train", "demo", "plan", "sweep", "episodes"):
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        assert "--set KEY=VALUE" in capsys.readouterr().out, command


SWEEP_CONFIG = textwrap.dedent(
    """
    from ml_collections import ConfigDict

    def get_config(arg=None):
        c = ConfigDict()
        c.seed = 0
        c.protocol = ConfigDict({"name": "veason"})
        c.sft = ConfigDict({"steps": 10, "learning_rate": 1e-4})
        return c

    def get_sweep(hyper):
        return hyper.product(
            [hyper.sweep("seed", [0, 1]), hyper.sweep("protocol.name", ["veason", "o3"])]
        )
    """
)


@pytest.fixture
def sweep_config(tmp_path):
    path = tmp_path / "sweep_cfg.py"
    path.write_text(SWEEP_CONFIG)
    return str(path)


def test_sweep_names_folders_after_values_and_passes_set(sweep_config, tmp_path, capsys):
    argv = ["sweep", "--config", sweep_config, "--workdir", str(tmp_path / "sw")]
    assert cli.main([*argv, "--set", "sft.steps=3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4
    assert f"--workdir {tmp_path / 'sw'}/seed=1,name=o3" in lines[3]
    assert all("--set sft.steps=3" in line for line in lines)
    # a --set that would undo what the sweep varies, or names no field, is refused
    assert cli.main([*argv, "--set", "seed=5"]) == 2
    assert "would override what the sweep varies" in _err(capsys)
    assert cli.main([*argv, "--set", "sft.step=3"]) == 2
    assert "did you mean 'sft.steps'?" in _err(capsys)


def test_sweep_keep_going_runs_past_failures(sweep_config, tmp_path, capsys):
    # `info` takes no --config: every run fails fast (argparse, exit 2)
    argv = ["sweep", "--config", sweep_config, "--workdir", str(tmp_path / "sw")]
    argv += ["--command", "info", "--run"]
    assert cli.main(argv) == 2  # stops at the first failure
    err = capsys.readouterr().err
    assert err.count("[sweep 1/4]") == 1 and "[sweep 2/4]" not in err and "stopping" in err
    assert cli.main([*argv, "--keep-going"]) == 1
    err = capsys.readouterr().err
    assert "[sweep 4/4]" in err and "4 of 4 runs failed" in err
    assert "seed=0,name=veason (exit 2)" in err


def test_traceback_env_reraises(monkeypatch, tmp_path):
    monkeypatch.setenv("JAXSEG_TRACEBACK", "1")
    from jaxseg.config import ConfigError

    with pytest.raises(ConfigError):
        cli.main(["train", "--workdir", str(tmp_path), "--set", "nope=1"])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__]))
