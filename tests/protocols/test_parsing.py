"""Parsers: hand cases for each format, and hypothesis fuzzing (never raise, typed output)."""

import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from jaxseg.protocols import parsing

FRAGMENTS = [
    "<think>",
    "</think>",
    "<answer>",
    "</answer>",
    "<select>",
    "</select>",
    "<VTG>",
    "</VTG>",
    "<box>",
    "</box>",
    '{"keyframe_timestamp": 3, "bbox_2d_list": [[1, 2, 30, 40]]}',
    '{"start": 1, "end": 9, "keyframe": 4}',
    '[{"bbox_2d": [1, 2, 30, 40], "point_2d": [5, 6]}]',
    "[[1, 2, 30, 40]]",
    '{"keyframe": 7}',
    "frame id: 3 ; object description: the red square",
    "no target",
    "A",
    "B",
    "(A)",
    "```json",
    "```",
    "{",
    "}",
    "[",
    "]",
    ",",
    '"',
    ":",
    "NaN",
    "Infinity",
    "1e999",
    "-0",
    "99999999999999999999",
    "true",
    "null",
    "[" * 50,
    "\n",
    " ",
]
adversarial = st.one_of(
    st.text(max_size=200),
    st.lists(st.sampled_from(FRAGMENTS), max_size=25).map("".join),
    st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=5)), max_size=25).map("".join),
)
PARSERS = [
    parsing.parse_veason,
    parsing.parse_description,
    parsing.parse_keyframe,
    parsing.parse_choice,
    parsing.parse_ktg,
    parsing.parse_o3_turn,
    parsing.parse_revseg_round1,
    parsing.parse_single_box,
]


def _finite_numbers(values):
    return all(isinstance(v, float) and math.isfinite(v) for v in values)


@settings(max_examples=150, deadline=None)
@given(adversarial)
def test_parsers_never_raise_and_return_typed_values(text):
    for parse in PARSERS:
        out = parse(text)
        assert isinstance(out.status, str) and out.status
    kb = parsing.parse_veason(text)
    assert kb.keyframe is None or isinstance(kb.keyframe, int)
    assert all(len(b) == 4 and _finite_numbers(b) for b in kb.boxes)
    assert kb.ok == (kb.status == "ok") and (not kb.ok or kb.boxes)
    g = parsing.parse_ktg(text)
    assert len(g.boxes) == len(g.points)
    assert all(p is None or _finite_numbers(p) for p in g.points)
    c = parsing.parse_choice(text)
    assert c.choice in (None, "A", "B")
    o = parsing.parse_o3_turn(text)
    assert o.action in (None, "select", "answer")
    assert (o.status == "ok") <= (o.has_vtg and bool(o.boxes))
    r1 = parsing.parse_revseg_round1(text)
    assert r1.keyframe is None or isinstance(r1.keyframe, int)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([f for f in FRAGMENTS if len(f) > 3]), st.integers(0, 200))
def test_truncated_valid_outputs_never_raise(fragment, cut):
    full = f"<think>x</think><answer>{fragment}</answer>"
    for parse in PARSERS:
        parse(full[:cut])


@settings(max_examples=40, deadline=None)
@given(
    st.integers(-(10**6), 10**6),
    st.lists(st.tuples(*[st.floats(-1e4, 1e4, allow_nan=False)] * 4), min_size=1, max_size=5),
)
def test_veason_round_trip(keyframe, boxes):
    payload = {"keyframe_timestamp": keyframe, "bbox_2d_list": [list(b) for b in boxes]}
    out = parsing.parse_veason(f"<think>t</think><answer>{json.dumps(payload)}</answer>")
    assert out.ok and out.keyframe == keyframe
    assert [list(b) for b in out.boxes] == [list(b) for b in boxes]


def test_veason_cases():
    ok = parsing.parse_veason(
        '<think>t</think><answer>```json\n{"keyframe_timestamp": 5.0, "bbox_2d_list": '
        '[[1, 2, 3, 4], "junk", [1, 2, 3]]}\n```</answer>'
    )
    assert ok.ok and ok.keyframe == 5 and ok.boxes == ((1.0, 2.0, 3.0, 4.0),)
    assert parsing.parse_veason("<answer>No target.</answer>").no_target
    assert parsing.parse_veason("no tags").status == "missing_answer"
    assert parsing.parse_veason("<answer>{</answer>").status == "malformed_json"
    assert parsing.parse_veason('<answer>{"keyframe_timestamp": true}</answer>').status == (
        "missing_keyframe"
    )
    nan = parsing.parse_veason(
        '<answer>{"keyframe_timestamp": 1, "bbox_2d_list": [[NaN, 1, 2, 3]]}</answer>'
    )
    assert nan.status == "malformed_json"  # NaN is not JSON here
    huge = parsing.parse_veason(
        '<answer>{"keyframe_timestamp": 1, "bbox_2d_list": [[1e300, 1, 2, 3]]}</answer>'
    )
    assert huge.status == "no_valid_box"


def test_text_around_json_is_tolerated():
    out = parsing.parse_keyframe('<answer>I pick {"keyframe": 12} now</answer>')
    assert out.ok and out.keyframe == 12
    assert parsing.parse_keyframe("<answer> 7 </answer>").keyframe == 7


def test_choice_cases():
    assert parsing.parse_choice("<answer> A </answer>").choice == "A"
    assert parsing.parse_choice("<answer>(B).</answer>").choice == "B"
    assert parsing.parse_choice("<answer>option a</answer>").choice == "A"
    assert parsing.parse_choice("<answer>C</answer>").choice is None
    assert parsing.parse_choice("<answer>AB</answer>").choice is None


def test_ktg_cases():
    g = parsing.parse_ktg(
        '<answer>[{"bbox_2d": [1, 2, 3, 4], "point_2d": [2, 3]}, {"bbox_2d": [5, 6, 7, 8]}, '
        '{"point_2d": [1, 1]}, 3]</answer>'
    )
    assert g.ok and g.boxes == ((1, 2, 3, 4), (5, 6, 7, 8)) and g.points == ((2, 3), None)
    single = parsing.parse_ktg('<answer>{"bbox_2d": [1, 2, 3, 4]}</answer>')
    assert single.ok and len(single.boxes) == 1
    assert parsing.parse_ktg("<answer>[]</answer>").status == "no_valid_box"
    assert parsing.parse_ktg("<answer>no target</answer>").no_target


def test_o3_cases():
    t = parsing.parse_o3_turn(
        '<think>s</think><select><VTG>{"start": 2, "end": 9, "keyframe": 5}</VTG>'
        "<box>[[1, 2, 3, 4]]</box></select>"
    )
    assert t.ok and t.action == "select" and (t.start, t.end, t.keyframe) == (2, 9, 5)
    no_box = parsing.parse_o3_turn(
        '<select><VTG>{"start": 2, "end": 9, "keyframe": 5}</VTG></select>'
    )
    assert no_box.status == "no_valid_box" and no_box.has_vtg  # the select still acts
    assert parsing.parse_o3_turn("<answer>no target</answer>").no_target
    assert parsing.parse_o3_turn("<select>no target</select>").status == "malformed_vtg"
    assert parsing.parse_o3_turn('<answer><VTG>{"start": 1}</VTG></answer>').status == (
        "malformed_vtg"
    )
    assert parsing.parse_o3_turn("nothing").action is None
    single = parsing.parse_o3_turn(
        '<answer><VTG>{"start": 0, "end": 1, "keyframe": 0}</VTG><box>[1, 2, 3, 4]</box></answer>'
    )
    assert single.ok and single.boxes == ((1, 2, 3, 4),)


def test_revseg_cases():
    r1 = parsing.parse_revseg_round1(
        "<answer> Frame ID: 12 ; Object Description:  the silver\nminivan </answer>"
    )
    assert r1.ok and r1.keyframe == 12 and r1.description == "the silver minivan"
    nt = parsing.parse_revseg_round1("<answer>frame id: 3 ; object description: no target</answer>")
    assert nt.no_target and nt.keyframe == 3
    assert parsing.parse_revseg_round1("<answer>frame 3, the car</answer>").status == "malformed"
    for body in ("[1, 2, 3, 4]", "[[1, 2, 3, 4]]", '{"bbox_2d": [1, 2, 3, 4]}',
                 '[{"bbox_2d": [1, 2, 3, 4]}]'):  # fmt: skip
        out = parsing.parse_single_box(f"<answer>{body}</answer>")
        assert out.ok and out.boxes == ((1, 2, 3, 4),), body
    assert parsing.parse_single_box("<answer>[[1, 2, 3, 4], [5, 6, 7, 8]]</answer>").status == (
        "no_valid_box"
    )


def test_huge_and_deeply_nested_inputs():
    deep = "<answer>" + "[" * 100_000 + "]" * 100_000 + "</answer>"
    long_digits = '<answer>{"keyframe": "' + "1" * 200_000 + '"}</answer>'
    many_tags = "<answer>" * 50_000 + "</select>" * 50_000
    for text in (deep, long_digits, many_tags):
        for parse in PARSERS:
            assert parse(text).status
    assert parsing.parse_keyframe(long_digits).status == "missing_keyframe"
