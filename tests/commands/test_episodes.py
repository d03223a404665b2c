"""`jaxseg episodes`: runs a protocol with a scripted policy and writes JSON traces."""

import json

from jaxseg import cli


def test_episodes_command_writes_traces(tmp_path, capsys):
    out = tmp_path / "traces.jsonl"
    argv = ["episodes", "--protocol", "o3", "--backend", "oracle", "--videos", "1"]
    assert cli.main([*argv, "--set", "max_turns=2", "--out", str(out)]) == 0
    traces = [json.loads(line) for line in out.read_text().splitlines()]
    assert traces and all(t["protocol"] == "o3" for t in traces)
    assert all(1 <= len(t["turns"]) <= 2 for t in traces)
    printed = capsys.readouterr().out
    assert "max (mean)" in printed and "parse status" in printed


def test_bad_override_is_an_error():
    assert cli.main(["episodes", "--protocol", "veason", "--set", "image_size"]) == 2
