"""Config loading, `:arg` knobs, overrides and sweeps."""

import textwrap

import pytest
from ml_collections import ConfigDict

from jaxseg import config as cfg

CONFIG_FILE = textwrap.dedent(
    """
    from ml_collections import ConfigDict
    from jaxseg.config import parse_arg

    def get_config(arg=None):
        arg = parse_arg(arg, size="tiny", group=4)
        c = ConfigDict()
        c.seed = 0
        c.model = ConfigDict({"size": arg.size, "dtype": "float32"})
        c.rl = ConfigDict({"group_size": arg.group, "beta": 0.04, "mesh": (1, 1, 1)})
        return c

    def get_sweep(hyper):
        return hyper.product([hyper.sweep("seed", [0, 1]), hyper.sweep("rl.beta", [0.0, 0.04])])
    """
)


@pytest.fixture
def config_path(tmp_path):
    path = tmp_path / "exp.py"
    path.write_text(CONFIG_FILE)
    return path


def test_arg_knobs_and_overrides(config_path):
    c = cfg.load_config(f"{config_path}:size=small,group=8", ["rl.beta=0.1", "rl.mesh=(2,2,2)"])
    assert c.model.size == "small" and c.rl.group_size == 8
    assert c.rl.beta == 0.1 and tuple(c.rl.mesh) == (2, 2, 2)
    assert cfg.parse_value("true") is True and cfg.parse_value("False") is False
    assert cfg.parse_value("truth") == "truth"


def test_unknown_arg_and_field_are_named(config_path):
    with pytest.raises(cfg.ConfigError, match="unknown config arg 'sise'"):
        cfg.load_config(f"{config_path}:sise=small")
    with pytest.raises(cfg.ConfigError, match="rl.bta"):
        cfg.load_config(str(config_path), ["rl.bta=1"])
    with pytest.raises(cfg.ConfigError, match="rl.group_size"):
        cfg.load_config(str(config_path), ["rl.group_size='many'"])


def test_missing_file_is_named(tmp_path):
    with pytest.raises(cfg.ConfigError, match="no_such.py"):
        cfg.load_config(str(tmp_path / "no_such.py"))


def test_parse_arg_types():
    a = cfg.parse_arg("n=3,lr=1e-3,name=x,flag", n=1, lr=0.1, name="y", flag=False)
    assert (a.n, a.lr, a.name, a.flag) == (3, 1e-3, "x", True)
    assert isinstance(a, ConfigDict)


def test_sweep_product_zip_chain(config_path):
    runs = cfg.load_sweep(str(config_path))
    assert runs == [
        {"seed": 0, "rl.beta": 0.0},
        {"seed": 0, "rl.beta": 0.04},
        {"seed": 1, "rl.beta": 0.0},
        {"seed": 1, "rl.beta": 0.04},
    ]
    h = cfg.Hyper
    assert h.zip([h.sweep("a", [1, 2]), h.sweep("b", [3, 4])]) == [
        {"a": 1, "b": 3},
        {"a": 2, "b": 4},
    ]
    assert h.chain([h.sweep("a", [1]), h.sweep("b", [2])]) == [{"a": 1}, {"b": 2}]
    with pytest.raises(cfg.ConfigError):
        h.zip([h.sweep("a", [1, 2]), h.sweep("b", [3])])


def test_sweep_command_prints_runs(config_path, capsys):
    from jaxseg import cli

    assert cli.main(["sweep", "--config", str(config_path), "--command", "train"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4
    assert "--set seed=1 --set rl.beta=0.04" in lines[3]


def test_demo_ladder_sweep_and_the_revseg_knob():
    """The demo's sweep is the ladder (2 seeds x 4 protocols); ReVSeg's runs (the sweep's and
    the `protocol=revseg` knob's) train RL from the base: no SFT, GRPO allowed without it."""
    from jaxseg.commands.demo import with_config_args

    runs = cfg.load_sweep("demo")
    assert len(runs) == 8 and {r["seed"] for r in runs} == {0, 1}
    assert sorted({r["protocol.name"] for r in runs}) == ["o3", "rcot", "revseg", "veason"]
    for run in runs:
        c = cfg.load_config("demo", [f"{k}={v}" for k, v in run.items()])
        from_base = c.protocol.name == "revseg"
        assert (c.sft.steps == 0) == from_base and c.grpo.require_sft != from_base
    knob = cfg.load_config(with_config_args("demo", protocol="revseg"))
    assert knob.protocol.name == "revseg" and knob.sft.steps == 0 and not knob.grpo.require_sft
    assert (
        with_config_args("demo:seed=1", quick=True, protocol="o3")
        == "demo:seed=1,quick,protocol=o3"
    )
    assert with_config_args("demo") == "demo"
