"""Query programs on hand-made scene graphs: answers, ambiguity, wording."""

from __future__ import annotations

import numpy as np

from jaxseg.data.synth import SynthConfig
from jaxseg.data.synth.queries import candidates, descriptions, evaluate, noun_phrase, wording

T = 6


def obj(i, shape, colour, size="medium", *, colours=None, sizes=None, visible=None):
    visible = visible if visible is not None else [10] * T
    return {
        "obj_id": i,
        "shape": shape,
        "depth": i,
        "colour": colours or [colour] * T,
        "size": sizes or [size] * T,
        "centre": [[0.0, 0.0]] * T,
        "in_frame": [v > 0 for v in visible],
        "full_area": list(visible),
        "visible_area": list(visible),
        "resting": [False] * T,
    }


def graph(objects, events=()):
    return {"num_frames": T, "height": 64, "width": 64, "objects": objects, "events": list(events)}


def ev(kind, frame, *objects, **extra):
    return {"type": kind, "frame": frame, "objects": list(objects), **extra}


def test_select_is_conservative_about_changing_colours():
    g = graph(
        [
            obj(0, "circle", "red"),
            obj(1, "circle", "blue", colours=["blue"] * 3 + ["red"] * 3),
            obj(2, "square", "red"),
        ],
        [ev("colour_change", 3, 1, **{"from": "blue", "to": "red"})],
    )
    # the second circle turns red, so "the red circle" has two referents
    assert evaluate({"op": "select", "filter": {"colour": "red", "shape": "circle"}}, g) == [0, 1]
    # an object is named only by attributes it never changes, and uniquely
    assert {"colour": "red", "shape": "circle"} not in descriptions(g, 0)
    assert descriptions(g, 1) == []  # its only unique trait (turning red) is not constant
    assert {"size": "medium", "shape": "square"} in descriptions(g, 2)
    # no referring candidate may name the ambiguous red circle
    for c in candidates(g, np.random.default_rng(0), SynthConfig()):
        if c["program"]["op"] == "select" and c["kind"] == "referring":
            assert len(evaluate(c["program"], g)) == 1


def test_invisible_attribute_values_do_not_count():
    # blue only while out of view: the object is not "blue"
    g = graph([obj(0, "star", "red", colours=["blue"] + ["red"] * 5, visible=[0] + [9] * 5)])
    assert evaluate({"op": "select", "filter": {"colour": "blue"}}, g) == []


def test_order_needs_a_clear_winner():
    g = graph(
        [obj(0, "circle", "red"), obj(1, "square", "red"), obj(2, "star", "red")],
        [ev("enter", 1, 0), ev("enter", 2, 1), ev("enter", 5, 2)],
    )
    first = {"op": "event", "event": "enter", "order": "first"}
    last = {"op": "event", "event": "enter", "order": "last"}
    assert evaluate(first, g) == [0, 1]  # one frame apart: ambiguous
    assert evaluate(last, g) == [2]
    assert evaluate(first | {"filter": {"shape": "square"}}, g) == [1]


def test_relations_and_presuppositions():
    g = graph(
        [obj(0, "circle", "red"), obj(1, "square", "blue"), obj(2, "star", "green", "small")],
        [
            ev("collide", 2, 0, 1),
            ev("stop", 4, 1),
            ev("stop", 1, 0),
            {"type": "hide", "frame": 3, "end": 4, "objects": [2, 1]},
        ],
    )
    assert evaluate({"op": "stop_after_collision"}, g) == [1]  # 0 stopped before it
    assert evaluate({"op": "colliders"}, g) == [0, 1]
    assert evaluate({"op": "collide_with", "ref": {"shape": "circle"}}, g) == [1]
    assert evaluate({"op": "hidden_by", "ref": {"colour": "blue"}}, g) == [2]
    assert evaluate({"op": "occluder_of", "ref": {"shape": "star"}}, g) == [1]
    # "when the square passes" needs a moving occluder; this one stood still
    assert evaluate({"op": "hidden_by", "ref": {"colour": "blue"}, "passes": True}, g) == []
    g["events"][-1]["occluder_moving"] = True
    assert evaluate({"op": "hidden_by", "ref": {"colour": "blue"}, "passes": True}, g) == [2]
    # "the collision" with two collisions, or an ambiguous reference: ill-posed
    two = graph(g["objects"], g["events"] + [ev("collide", 5, 0, 2)])
    assert evaluate({"op": "stop_after_collision"}, two) is None
    # "after colliding": each object's own first collision; 0 stopped before its collision
    assert evaluate({"op": "stop_after_collision", "any": True}, two) == [1]
    assert evaluate({"op": "hidden_by", "ref": {"size": "medium"}}, g) is None


def test_grow_and_shrink_and_colour_targets():
    g = graph(
        [
            obj(0, "circle", "red", sizes=["small"] * 3 + ["large"] * 3),
            obj(1, "square", "red", sizes=["large"] * 3 + ["medium"] * 3),
            obj(2, "star", "red", colours=["red"] * 2 + ["blue"] * 4),
        ],
        [
            ev("size_change", 3, 0, **{"from": "small", "to": "large"}),
            ev("size_change", 3, 1, **{"from": "large", "to": "medium"}),
            ev("colour_change", 2, 2, **{"from": "red", "to": "blue"}),
        ],
    )
    assert evaluate({"op": "event", "event": "grow"}, g) == [0]
    assert evaluate({"op": "event", "event": "shrink"}, g) == [1]
    assert evaluate({"op": "event", "event": "colour_change", "to": "blue"}, g) == [2]
    assert evaluate({"op": "event", "event": "colour_change", "to": "green"}, g) == []


def test_every_candidate_is_verified_and_typed():
    g = graph(
        [obj(0, "circle", "red"), obj(1, "triangle", "blue"), obj(2, "triangle", "blue", "small")],
        [ev("enter", 2, 1), ev("exit", 4, 0)],
    )
    cands = candidates(g, np.random.default_rng(1), SynthConfig())
    assert cands
    kinds = {c["kind"] for c in cands}
    assert {"referring", "reasoning", "multi", "null"} <= kinds
    for c in cands:
        assert evaluate(c["program"], g) == c["targets"]
        if not c["targets"]:
            assert c["type_id"] == 2 and c["kind"] == "null"
        else:
            assert c["type_id"] == (0 if c["program"]["op"] == "select" else 1)
    texts = {c["exp"] for c in cands}
    assert "both triangles" in texts or "the two triangles" in texts


def test_wording():
    rng = np.random.default_rng(0)
    assert noun_phrase({"size": "small", "colour": "red", "shape": "cross"}, plural=True) == (
        "small red crosses"
    )
    text = wording({"op": "hidden_by", "ref": {"shape": "square"}}, rng)
    assert "square" in text
    assert wording({"op": "select", "filter": {"shape": "star"}}, rng, count=3).endswith("stars")
