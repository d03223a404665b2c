"""Policy state book-keeping shared by scripted policies (and the contract a sampler keeps)."""

import numpy as np
import pytest

from jaxseg.protocols.policy import (
    Policy,
    PolicyState,
    image_part,
    last_user_meta,
    message,
    message_images,
    message_text,
    text_part,
    truncate_at_stop,
)

from .helpers import ReplayPolicy


def conv(meta=None):
    return [message("user", [text_part("hi "), image_part(np.zeros((4, 4, 3), np.uint8))], meta)]


def test_respond_append_finish():
    policy = ReplayPolicy(["a</answer> trailing", "b"], ["c", "d"])
    assert isinstance(policy, Policy)
    state = policy.start([conv(), conv()])
    assert policy.respond(state, stop=("</answer>",)) == ["a</answer>", "c"]
    assert message_text(state.conversations[0][-1]) == "a</answer>"
    policy.finish(state, 1)
    policy.append_user_turn(state, 0, message("user", [text_part("more")]))
    assert policy.respond(state) == ["b", None]
    assert policy.calls == [[0, 1], [0]]
    assert [len(c) for c in state.conversations] == [4, 2]
    with pytest.raises(ValueError, match="finished"):
        policy.append_user_turn(state, 1, message("user", [text_part("x")]))
    with pytest.raises(ValueError, match="user message"):
        policy.append_user_turn(state, 0, message("assistant", [text_part("x")]))
    with pytest.raises(IndexError):
        policy.finish(state, 5)


def test_messages():
    with pytest.raises(ValueError, match="empty"):
        PolicyState.open([[]])
    with pytest.raises(ValueError, match="uint8"):
        image_part(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="role"):
        message("tool", [])
    c = conv({"step": "x"})
    assert message_images(c[0])[0].shape == (4, 4, 3)
    assert last_user_meta(c) == {"step": "x"} and last_user_meta([]) == {}


def test_truncate_at_stop():
    assert truncate_at_stop("a</select>b</answer>c", ("</answer>", "</select>")) == "a</select>"
    assert truncate_at_stop("abc", ("", "x")) == "abc"
