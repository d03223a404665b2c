"""Stop-string spellings in token ids, the in-loop matcher and the host text check, with the
project's synthetic tokenizer (protocol tags are single added tokens there)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from jaxseg.sampling import build_stop_table, first_stop_in_text, stop_spellings
from jaxseg.sampling.stop import NO_TOKEN, is_eos, matches_stop


def _encode(tokenizer):
    return lambda text: tokenizer.encode(text, add_special_tokens=False)


def test_protocol_tags_are_one_token_in_every_context(tokenizer):
    for tag in ("</answer>", "</select>"):
        spellings = stop_spellings(_encode(tokenizer), tokenizer.decode, tag)
        assert spellings == [(tokenizer.convert_tokens_to_ids(tag),)]


def test_multi_token_string_spellings_decode_to_it_and_include_the_plain_encoding(tokenizer):
    stop = "the red circle"
    spellings = stop_spellings(_encode(tokenizer), tokenizer.decode, stop)
    assert tuple(_encode(tokenizer)(stop)) in spellings
    assert len(spellings) > 1  # context merges (" the") give other spellings
    for seq in spellings:
        assert stop in tokenizer.decode(list(seq))
        assert stop not in tokenizer.decode(list(seq[1:]))  # shortest suffix


def test_table_matches_windows_ending_with_a_spelling(tokenizer):
    table = build_stop_table([7], ["the red circle", "</answer>"], tokenizer)
    w = table.window
    ids = _encode(tokenizer)("x, the red circle")
    window = np.full((3, w), NO_TOKEN, np.int32)
    window[0, -len(ids[-w:]) :] = ids[-w:]
    answer = tokenizer.convert_tokens_to_ids("</answer>")
    window[1, -2:] = [5, answer]
    window[2, -3:] = ids[-4:-1]  # stops one token short
    np.testing.assert_array_equal(matches_stop(jnp.asarray(window), table), [True, True, False])
    np.testing.assert_array_equal(is_eos(jnp.asarray([7, 8, 0]), table), [True, False, False])


def test_table_without_stops_never_matches():
    table = build_stop_table([], [])
    window = jnp.asarray([[NO_TOKEN], [0], [5]], jnp.int32)
    assert not matches_stop(window, table).any()
    assert not is_eos(jnp.asarray([0, 1, 2]), table).any()


def test_first_stop_in_text_counts_tokens_up_to_the_completing_one(tokenizer):
    ids = _encode(tokenizer)("<think>ok</think><answer>A</answer> trailing")
    n = first_stop_in_text(ids, ["</answer>"], tokenizer.decode)
    assert tokenizer.decode(ids[:n]).endswith("</answer>")
    assert "</answer>" not in tokenizer.decode(ids[: n - 1])
    assert first_stop_in_text(ids, ["</select>"], tokenizer.decode) is None
    assert first_stop_in_text(ids, [], tokenizer.decode) is None


def test_bad_stop_configuration_is_an_error(tokenizer):
    with pytest.raises(ValueError, match="without a tokenizer"):
        build_stop_table([1], ["</answer>"])
    with pytest.raises(ValueError, match="empty stop string"):
        build_stop_table([1], [""], tokenizer)
