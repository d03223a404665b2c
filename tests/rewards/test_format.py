from hypothesis import given, settings

from jaxseg.rewards import format as fmt

from .fuzz import model_text


def test_parse_turn_accepts_the_canonical_forms():
    t = fmt.parse_turn("  <think>look</think>\n<answer> 42 </answer>\n")
    assert t == fmt.Turn(think="look", action="answer", body=" 42 ")
    t = fmt.parse_turn("<think>a</think><select>x</select>", ("select", "answer"))
    assert t is not None and t.action == "select"


def test_parse_turn_rejects_broken_structure():
    bad = [
        "",
        "<think>a</think>",  # no answer
        "<answer>x</answer><think>a</think>",  # wrong order
        "<think>a</think>text<answer>x</answer>",  # junk between
        "pre<think>a</think><answer>x</answer>",  # junk before
        "<think>a</think><answer>x</answer>post",  # junk after
        "<think>a<think>b</think><answer>x</answer>",  # nested think
        "<think>a</think><answer>x</select>",  # mismatched close
        "<think>a</think><select>x</select>",  # select not allowed by default
        "<think>a</think><answer>x</answer><answer>y</answer>",  # two answers
    ]
    for text in bad:
        assert fmt.parse_turn(text) is None, text


def test_tag_content_and_json():
    assert fmt.tag_content("x<VTG>{}</VTG>y", "VTG") == "{}"
    assert fmt.tag_content("<VTG>{}", "VTG") is None
    assert fmt.parse_json('{"a": [1, 2]}') == (True, {"a": [1, 2]})
    for bad in ["NaN", "[1, Infinity]", "{", "[" * 50_000, "1" * 10_000, None]:
        assert fmt.parse_json(bad) == (False, None)


def test_box_and_point_validity():
    assert fmt.is_box([1, 2, 3.5, 4])
    assert not fmt.is_box([1, 2, 3])
    assert not fmt.is_box([1, 2, True, 4])  # bool is not a coordinate
    assert not fmt.is_box([1, 2, float("nan"), 4])
    assert fmt.is_point((1, 2)) and not fmt.is_point([1, "2"])


def test_adversarial_long_inputs_are_linear():
    # quadratic regex backtracking would make these take minutes
    assert fmt.parse_turn("<think>" + "</think><answer>" * 20_000) is None
    assert fmt.think_answer_format_reward("<think>" + "a" * 200_000) == 0.0


@settings(max_examples=300, deadline=None)
@given(model_text)
def test_fuzz_never_raises(text):
    assert fmt.think_answer_format_reward(text) in (0.0, 1.0)
    fmt.parse_turn(text, ("select", "answer"))
    fmt.parse_json(fmt.tag_content(text, "answer"))
