"""Hypothesis strategies for adversarial model output (tags, JSON fragments, junk)."""

from hypothesis import strategies as st

FRAGMENTS = [
    "<think>",
    "</think>",
    "<answer>",
    "</answer>",
    "<select>",
    "</select>",
    "<VTG>",
    "</VTG>",
    "<RefSeg>",
    "</RefSeg>",
    "[SEG]",
    '{"start": 1, "end": 3, "keyframe": 2}',
    '{"keyframe_timestamp": 3, "bbox_2d_list": [[1, 2, 30, 40]]}',
    '[{"bbox_2d": [1, 2, 30, 40], "point_2d": [5, 6]}]',
    "frame id: 3 ; object description: the red car",
    "Step 1",
    "step 2",
    "STEP 3",
    "Action",
    "A",
    "B",
    "{",
    "}",
    "[",
    "]",
    ",",
    '"',
    "NaN",
    "1e999",
    "true",
    "null",
    "\n",
    " ",
    "<",
    ">",
    "/",
]

model_text = st.one_of(
    st.text(max_size=200),
    st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=5)), max_size=30).map("".join),
)


def prefixes(text: str) -> list[str]:
    """Every truncation point of a text (a generation cut by the length limit)."""
    return [text[:i] for i in range(len(text) + 1)]
