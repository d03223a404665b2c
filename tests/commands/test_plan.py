"""`jaxseg plan`: report on stdout, exit 0 when it fits, 1 when not, 2 on a bad request."""

import re

from jaxseg.cli import main


def test_plan_v5p32_prints_the_arithmetic_and_fits(capsys):
    rc = main(["plan", "--config", "qwen2_5_vl_3b_grpo:remat=full", "--topology", "v5p-32"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "v5p-32 (16 x TPU v5p" in out and "'fsdp': 16" in out
    for section in (
        "memory per device, training phase",
        "memory per device, rollout phase",
        "FLOPs per GRPO step",
        "time per GRPO step",
    ):
        assert section in out
    assert "-> fits" in out


def test_plan_that_does_not_fit_exits_1(capsys):
    # the default (remat none: what the model runs today) keeps every layer's attention scores
    rc = main(["plan", "--config", "qwen2_5_vl_3b_grpo", "--topology", "v5p-32"])
    assert rc == 1
    assert "DOES NOT FIT" in capsys.readouterr().out


def test_plan_lists_every_remat_policy(capsys):
    """The config's own policy decides the exit code; the table shows all three, memory
    falling and (full) recompute time rising."""
    rc = main(["plan", "--config", "qwen2_5_vl_3b_grpo", "--topology", "v5p-32"])
    out = capsys.readouterr().out
    assert rc == 1
    rows = {}
    for policy in ("none", "dots_saveable", "full"):
        (line,) = [x for x in out.splitlines() if x.strip().startswith(policy + " ")]
        gb, step = (float(v) for v in re.findall(r"([\d.]+) (?:GB|s)", line))
        rows[policy] = (gb, step, line.endswith("-> fits"))
    assert rows["none"][0] > rows["dots_saveable"][0] > rows["full"][0]
    assert rows["full"][1] > rows["dots_saveable"][1] == rows["none"][1]
    assert [rows[p][2] for p in rows] == [False, True, True]


def test_bad_topology_or_override_exits_2(capsys):
    assert main(["plan", "--config", "qwen2_5_vl_3b_grpo", "--topology", "v9-32"]) == 2
    assert "jaxseg: error: unknown topology" in capsys.readouterr().err
    rc = main(
        ["plan", "--config", "qwen2_5_vl_3b_grpo", "--topology", "8xH100", "--set", "grpo.groups=4"]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxseg: error:") and "grpo.groups" in err
    assert "did you mean 'grpo.group_size'?" in err


def test_plan_takes_set_like_every_command(capsys):
    args = ["plan", "--config", "qwen2_5_vl_3b_grpo", "--topology", "v5p-32"]
    assert main([*args, "--set", "model.remat='full'", "--set", "grpo.micro_batch=32"]) == 0
    assert "-> fits" in capsys.readouterr().out
