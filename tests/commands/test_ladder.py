"""`jaxseg ladder`: its tables from held-out summaries, and (slow) a quick ladder end to end:
the runs, the hard benchmark (another generator seed, difficulty hard) and ladder.md."""

import json

import pytest

from jaxseg import cli
from jaxseg.commands.ladder import hard_config, ladder_table, seed_means


def summary(referring, reasoning, null, reward=0.5):
    subsets = {
        name: {"J": v - 1, "F": v + 1, "JF": v}
        for name, v in (("referring", referring), ("reasoning", reasoning), ("null", null))
    }
    return {"subsets": subsets, "reward": {"reward/total": reward}}


def test_tables_name_each_rung_and_average_seeds():
    rows = [
        ("veason", "-", "prior", summary(3, 2, 0)),
        ("veason", 0, "init", summary(5, 4, 50)),
        ("veason", 0, "sft", summary(9, 8, 60)),
        ("veason", 0, "grpo", summary(12, 14, 70)),
        ("veason", 1, "init", summary(5, 6, 50)),
        ("veason", 1, "sft", summary(9, 10, 60)),
        ("veason", 1, "grpo", summary(12, 18, 70)),
        ("revseg", 0, "init", summary(5, 4, 50)),
        ("revseg", 0, "grpo", summary(7, 9, 50)),
    ]
    table = ladder_table(rows)
    lines = table.splitlines()
    assert len(lines) == 2 + len(rows)
    assert "| veason | 1 | SFT+GRPO | 11.0 | 13.0 | 12.0 | 17.0 | 19.0 | 18.0 |" in table
    assert "| revseg | 0 | base+GRPO |" in table and "| revseg | 0 | SFT |" not in table
    means = seed_means(rows)
    assert "| veason | 2.0 | 5.0 | 9.0 | 16.0 | 4.0 | 7.0 |" in means
    assert "| revseg | - | 4.0 | - | 9.0 | - | 5.0 |" in means  # GRPO over the base
    assert "| veason | - | prior (mean box) | 2.0 | 4.0 | 3.0 |" in table


def test_hard_config_changes_only_the_benchmark():
    from jaxseg.config import load_config

    c = load_config("demo:quick")
    h = hard_config(c, "/tmp/hard", 77)
    assert (h.data.synth.seed, h.data.synth.difficulty, h.data.root) == (77, "hard", "/tmp/hard")
    assert c.data.synth.difficulty != "hard" and h.model == c.model and h.grpo == c.grpo


@pytest.mark.slow
def test_quick_ladder_end_to_end(tmp_path):
    root = tmp_path / "ladder"
    argv = ["ladder", "--quick", "--no-progress", "--workdir", str(root)]
    argv += ["--protocols", "revseg", "--seeds", "0", "--hard-seed", "11"]
    assert cli.main(argv) == 0
    text = (root / "ladder.md").read_text()
    assert text.count("| revseg | 0 | base |") == 2  # held-out and hard tables
    assert text.count("| revseg | 0 | base+GRPO |") == 2
    assert text.count("| revseg | - | prior (mean box) |") == 2
    marker = json.loads((root / "hard" / "data" / "jaxseg_synth.json").read_text())
    assert (marker["seed"], marker["difficulty"]) == (11, "hard")
    run = root / "revseg-seed0"
    assert not (run / "sft").exists()  # RL from the base
    for tag in ("prior", "init", "grpo"):
        assert (run / "hard" / "eval" / tag / "summary.json").is_file()
    assert (run / "report.md").is_file()
    before = (run / "hard" / "eval" / "grpo" / "summary.json").stat().st_mtime
    assert cli.main(argv) == 0  # a re-run resumes: nothing is evaluated again
    assert (run / "hard" / "eval" / "grpo" / "summary.json").stat().st_mtime == before
