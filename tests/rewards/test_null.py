import pytest

from jaxseg.rewards.null import null_reward


@pytest.mark.parametrize(
    ("has_target", "said_no", "boxes", "expected"),
    [
        (False, True, 0, 1.0),  # correct abstention
        (False, False, 0, 0.0),  # silent empty answer
        (False, False, 2, -1.0),  # hallucinated boxes on a null query
        (False, True, 1, -1.0),  # says none but still draws a box
        (True, True, 0, -1.0),  # false abstention
        (True, False, 3, 0.0),  # normal answer: grounding rewards judge it
    ],
)
def test_table(has_target, said_no, boxes, expected):
    assert null_reward(has_target=has_target, said_no_target=said_no, num_pred_boxes=boxes) == (
        expected
    )


def test_negative_count_raises():
    with pytest.raises(ValueError, match="num_pred_boxes"):
        null_reward(has_target=False, said_no_target=False, num_pred_boxes=-1)
