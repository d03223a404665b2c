"""The shipped base's card states how its recipe changed during the run that trained it."""

from __future__ import annotations

import json

from jaxseg.commands.base import _history_lines, recipe_changes


def test_card_lists_each_config_change_from_the_step_it_took_effect(tmp_path):
    (tmp_path / "pretrain").mkdir()
    rows = [{"kind": "train", "step": s, "time": 100.0 + s} for s in range(10)]
    rows.insert(3, {"kind": "eval", "step": 2, "time": 500.0})  # not a training step
    (tmp_path / "pretrain" / "metrics.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows)
    )
    history = tmp_path / "config_history"
    history.mkdir()
    for n, (t, change) in enumerate(((104.5, "a: 1 -> 2"), (900.0, "b: (absent) -> 3"))):
        entry = {"time": t, "changes": [change], "previous": {}}
        (history / f"{n:03d}.json").write_text(json.dumps(entry))
    got = recipe_changes(tmp_path)
    assert got == [
        {"step": 5, "changes": ["a: 1 -> 2"]},
        {"step": None, "changes": ["b: (absent) -> 3"]},
    ]
    lines = _history_lines(got)
    assert "changed 2 times" in lines[0]
    assert lines[1:] == [
        "  - from step 5: `a: 1 -> 2`",
        "  - after its last step: `b: (absent) -> 3`",
    ]
    assert recipe_changes(tmp_path / "elsewhere") == [] and _history_lines([]) == []
