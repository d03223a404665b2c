"""Host-side batch assembly: buckets, left padding, M-RoPE positions of prompts and appended
turns (== `get_rope_index` over the whole conversation), media padding, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from jaxseg.models.qwen2_5_vl import Qwen2_5_VLConfig, get_rope_index
from jaxseg.sampling import History, Prompt, assemble_segment, bucket

from .helpers import make_prompt


@pytest.fixture(scope="module")
def config(hf_dir):
    return Qwen2_5_VLConfig.from_json_file(hf_dir[1] / "config.json")


def _rope(history: History, config, extra=1):
    ids = np.asarray([history.ids + [0] * extra])
    return get_rope_index(
        ids,
        np.stack(history.image_grids) if history.image_grids else None,
        np.stack(history.video_grids) if history.video_grids else None,
        history.seconds or None,
        config=config,
    )


def test_prompt_positions_and_next_position(config, tokenizer, special, media):
    prompts = [
        make_prompt(tokenizer, special, media, ("video",), text="Find it", tail="?"),
        make_prompt(tokenizer, special, media, (), text="Which object moves first?"),
        make_prompt(tokenizer, special, media, ("img_a", "img_b")),
    ]
    batch, next_pos, hists = assemble_segment([History()] * 3, prompts, config)
    length = batch.input_ids.shape[1]
    assert length == bucket(max(len(p.input_ids) for p in prompts))
    for b, p in enumerate(prompts):
        n = len(p.input_ids)
        np.testing.assert_array_equal(batch.input_ids[b, length - n :], p.input_ids)
        assert batch.attention_mask[b].sum() == n and batch.attention_mask[b, -n:].all()
        # positions: get_rope_index over prompt + one generated token
        pos, deltas = _rope(hists[b], config)
        np.testing.assert_array_equal(batch.position_ids[:, b, length - n :], pos[:, 0, :-1])
        assert next_pos[b] == pos[0, 0, -1]
    # the video row: the continuation is not max + 1 (transformers >= 5 advances by the spatial
    # extent after a video); generate's "last + 1" and the full forward agree on next_pos
    pos, deltas = _rope(hists[0], config, extra=0)
    assert next_pos[0] == pos[0, 0, -1] + 1
    assert next_pos[0] != len(prompts[0].input_ids) + deltas[0, 0]


def test_appended_turn_positions_equal_the_whole_conversation(config, tokenizer, special, media):
    prompt = make_prompt(tokenizer, special, media, ("video",), text="Find it", tail="?")
    _, _, hists = assemble_segment([History()], [prompt], config)
    hists[0].ids.extend([11, 12, 13])  # a completion
    turn = make_prompt(tokenizer, special, media, ("img_b",), text="Frame 3:")
    batch, next_pos, new = assemble_segment(hists, [turn], config)
    pos, _ = _rope(new[0], config)
    n = len(turn.input_ids)
    np.testing.assert_array_equal(batch.position_ids[:, 0, -n:], pos[:, 0, -n - 1 : -1])
    assert next_pos[0] == pos[0, 0, -1]
    assert new[0].ids == list(prompt.input_ids) + [11, 12, 13] + list(turn.input_ids)
    assert len(new[0].image_grids) == 1 and len(new[0].video_grids) == 1


def test_media_are_padded_to_a_bucket(config, tokenizer, special, media):
    prompts = [make_prompt(tokenizer, special, media, (k,)) for k in ("img_a", "img_b")]
    batch, _, _ = assemble_segment([History()] * 2, prompts, config)
    n_real = sum(p.pixel_values.shape[0] for p in prompts)
    n_pad = batch.pixel_values.shape[0]
    assert n_pad == bucket(n_real, minimum=64) and n_pad > n_real
    np.testing.assert_array_equal(
        batch.pixel_values[:n_real], np.concatenate([p.pixel_values for p in prompts])
    )
    assert batch.image_layout.rotary_ids.shape[0] == n_pad


def test_bad_rows_name_the_row(config, tokenizer, special, media):
    good = make_prompt(tokenizer, special, media, ("img_a",))
    with pytest.raises(ValueError, match="row 1: empty prompt"):
        assemble_segment([History()] * 2, [good, Prompt([])], config)
    with pytest.raises(ValueError, match="row 0: pixel_values has 3 rows"):
        assemble_segment(
            [History()],
            [Prompt(good.input_ids, good.pixel_values[:3], good.image_grid_thw)],
            config,
        )
    with pytest.raises(ValueError, match="row 0: pixel_values and image_grid_thw"):
        assemble_segment([History()], [Prompt(good.input_ids, good.pixel_values)], config)
    with pytest.raises(ValueError, match="row 1: 0 runs of image placeholder tokens but 1 rows"):
        text = make_prompt(tokenizer, special, media, ())
        assemble_segment(
            [History()] * 2,
            [good, Prompt(text.input_ids, good.pixel_values, good.image_grid_thw)],
            config,
        )
    with pytest.raises(ValueError, match="row 1: .*placeholder tokens but image_grid_thw row"):
        short = Prompt(list(good.input_ids)[:-3] + [7, 7], good.pixel_values, good.image_grid_thw)
        assemble_segment([History()] * 2, [good, short], config)
    with pytest.raises(ValueError, match="2 segments for 1 rows"):
        assemble_segment([History()], [good, good], config)
