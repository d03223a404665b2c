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


def test_a_base_ships_only_when_its_grounding_beats_the_shipped_one_on_the_same_tasks():
    from jaxseg.commands.base import ship_decision

    def scores(box, frames=None):
        out = {"box": {"iou": box}, "count": {"accuracy": 0.9}}
        if frames is not None:
            out["frames"] = {"iou": frames}
        return out

    assert ship_decision(scores(0.1), None)[0]  # nothing shipped yet
    # the mean of box and frames: a frames gain can pay for a smaller box loss, not a larger one
    ship, why = ship_decision(scores(0.21, 0.10), scores(0.25, 0.0))
    assert ship and "box 0.210 vs 0.250" in why and "frames 0.100 vs 0.000" in why
    assert not ship_decision(scores(0.10, 0.10), scores(0.25, 0.0))[0]
    assert not ship_decision(scores(0.25, 0.0), scores(0.25, 0.0))[0]  # a tie keeps the old one
    # within the margin too: noise between checkpoints does not earn a copy in git
    assert not ship_decision(scores(0.221, 0.030), scores(0.249, 0.0))[0]
    assert ship_decision(scores(0.221, 0.030), scores(0.249, 0.0), min_gain=0.0)[0]
    # a task only one side was scored on does not count
    assert ship_decision(scores(0.27, 0.0), scores(0.25))[0]
    assert not ship_decision(scores(0.24, 0.9), scores(0.25))[0]
