"""VideoSEG-O3 with [SEG] answers (O3Config.answer="seg"): the released turn format, masks
from the policy's callable, the final mask propagated as a mask prompt, oracle traces."""

import json

import numpy as np
import pytest

from jaxseg.protocols import make_protocol, run_episodes
from jaxseg.protocols.o3 import (
    gt_keyframe_masks,
    parse_seg_turn,
    seg_turn_format_ok,
    text_turn_format_ok,
)
from jaxseg.protocols.scripted import OraclePolicy
from jaxseg.segmenter import make_backend

from .helpers import ReplayPolicy, square_sample


def seg_turn(action, start, end, keyframe, refseg="[SEG]", think="Step 1: a. Action: x"):
    vtg = json.dumps({"start": start, "end": end, "keyframe": keyframe})
    return f"<think>{think}</think><{action}><VTG>{vtg}</VTG><RefSeg>{refseg}</RefSeg></{action}>"


@pytest.fixture
def sample():
    return square_sample()  # target in positions 3..8, ids = positions


class Recorder:
    """A seg_masks callable that returns given per-turn masks and remembers its calls."""

    def __init__(self, *masks):
        self.masks, self.calls = list(masks), []

    def __call__(self, episode):
        self.calls.append(len(episode.texts))
        return self.masks[: len(episode.texts)]


def run(protocol, sample, script):
    return run_episodes(protocol, ReplayPolicy(script), [sample], backend=make_backend("oracle"))[0]


def test_system_prompt_and_oracle_turns_use_refseg(sample):
    protocol = make_protocol("o3", answer="seg")
    assert "<RefSeg>[SEG]</RefSeg>" in protocol.system_prompt and "<box>" not in (
        protocol.system_prompt
    )
    protocol.seg_masks = gt_keyframe_masks
    tr = run_episodes(
        protocol, OraclePolicy(protocol, [sample]), [sample], backend=make_backend("oracle")
    )[0]
    assert all(
        "<RefSeg>[SEG]</RefSeg>" in t.response and "<box>" not in t.response for t in tr.turns
    )
    assert all(t.parse_status in ("ok", "ok:not_executed") for t in tr.turns)
    assert tr.total == pytest.approx(protocol.max_reward(sample))  # the oracle's GT masks
    assert tr.metrics["J"] == 1.0


def test_seg_format_check():
    good = seg_turn("select", 1, 4, 2)
    assert seg_turn_format_ok(good)
    assert not seg_turn_format_ok(seg_turn("select", 1, 4, 2, refseg="the cat"))
    assert not seg_turn_format_ok(good.replace("<RefSeg>[SEG]</RefSeg>", "<box>[[1,2,3,4]]</box>"))
    assert not seg_turn_format_ok(good.replace('"keyframe": 2', '"keyframe": 2.5'))
    assert seg_turn_format_ok("<think>x</think><answer>no target</answer>")
    assert parse_seg_turn(good).ok
    assert parse_seg_turn(seg_turn("answer", 1, 4, 2, refseg="")).status == "no_seg"


def test_turn_masks_come_from_the_callable_and_final_is_a_mask_prompt(sample):
    """Turn 0's [SEG] mask misses the target (keyframe IoU 0), turn 1's is the GT: R_p pays
    for the improvement; the final mask prompts the backend on the final keyframe."""
    gt = sample.target_masks
    empty = np.zeros(gt.shape[1:], bool)
    recorder = Recorder(empty, gt[5].copy())
    protocol = make_protocol("o3", answer="seg")
    protocol.seg_masks = recorder
    tr = run(protocol, sample, [seg_turn("select", 3, 9, 4), seg_turn("answer", 3, 9, 5)])
    assert recorder.calls == [2]  # asked once, after the last turn
    assert [t.reward["keyframe_iou"] for t in tr.turns] == [0.0, 1.0]
    assert tr.reward["progressive"] == 2.0
    assert tr.reward["strict_format"] == 1.0
    assert tr.metrics["J"] == 1.0  # oracle propagation of the GT keyframe mask
    ep = protocol.episode(sample, protocol.opening(sample, np.random.default_rng(0)))
    for text in (seg_turn("answer", 3, 9, 5),):
        ep.step(text)
    ep.protocol.seg_masks = Recorder(gt[5].copy())
    job = ep.mask_jobs()["final"]
    assert job.position == 5 and np.array_equal(job.prompts[0].mask, gt[5])


def test_no_seg_or_empty_mask_gives_no_final_mask(sample):
    protocol = make_protocol("o3", answer="seg")
    protocol.seg_masks = Recorder(None)
    tr = run(protocol, sample, [seg_turn("answer", 3, 9, 5, refseg="")])
    assert tr.final.fallback and tr.pred_masks is not None and not tr.pred_masks.any()
    assert tr.reward["strict_format"] == -1.0


def test_missing_callable_or_bad_masks_raise_clear_errors(sample):
    protocol = make_protocol("o3", answer="seg")
    with pytest.raises(ValueError, match="seg_masks"):
        run(protocol, sample, [seg_turn("answer", 3, 9, 5)])
    protocol.seg_masks = Recorder(np.zeros((3, 3), bool))
    with pytest.raises(ValueError, match=r"mask shape \(3, 3\)"):
        run(protocol, sample, [seg_turn("answer", 3, 9, 5)])
    protocol.seg_masks = lambda ep: []
    with pytest.raises(ValueError, match="0 masks for 1 turns"):
        run(protocol, sample, [seg_turn("answer", 3, 9, 5)])
    with pytest.raises(ValueError, match="o3.answer"):
        make_protocol("o3", answer="points")


def test_random_turns_in_seg_mode_answer_with_seg():
    protocol = make_protocol("o3", answer="seg")
    rng = np.random.default_rng(0)
    conv = [{"role": "user", "content": [], "meta": {"shown": [0, 3, 5], "image_size": 64}}]
    texts = [protocol.random_turn(conv, rng) for _ in range(40)]
    assert not any(text_turn_format_ok(t) and "no target" not in t for t in texts)  # no boxes
    assert any(seg_turn_format_ok(t) and "[SEG]" in t for t in texts)


@pytest.mark.parametrize("convention", ["released", "paper"])
def test_per_turn_keyframe_convention(sample, convention):
    """released: turn 0's [SEG] on the video's middle frame, turn 1's on the frame the select
    fetched, the final propagation from the last executed select's keyframe; paper: each
    turn on its own VTG keyframe."""
    protocol = make_protocol("o3", answer="seg", keyframes=convention)
    gt = sample.target_masks
    protocol.seg_masks = gt_keyframe_masks
    tr = run(protocol, sample, [seg_turn("select", 3, 9, 4), seg_turn("answer", 3, 9, 6)])
    ep = protocol.episode(sample, protocol.opening(sample, np.random.default_rng(0)))
    ep.step(seg_turn("select", 3, 9, 4))
    ep.step(seg_turn("answer", 3, 9, 6))
    mid = sample.num_frames // 2
    if convention == "released":
        assert ep.turn_keyframes == [mid, 4] and ep.final_action().position == 4
        assert tr.final.keyframe == sample.frame_ids[4]
    else:
        assert ep.turn_keyframes == [4, 6] and ep.final_action().position == 6
    assert gt is not None


def test_mask_reward_reads_the_decoded_sampled_frame_masks(sample):
    """R_m from `seg_sampled_masks` (the final [SEG] decoded on each spatial frame), not from
    the propagated masks: perfect decoded masks earn 1.5 even when propagation is empty."""
    protocol = make_protocol("o3", answer="seg")
    protocol.seg_masks = gt_keyframe_masks
    tr = run(protocol, sample, [seg_turn("answer", 3, 9, 5)])
    propagated = tr.reward["mask"]
    spatial = protocol.opening(sample, np.random.default_rng(0)).context["spatial"]
    protocol.seg_sampled_masks = lambda ep: [sample.target_masks[p] for p in spatial]
    assert run(protocol, sample, [seg_turn("answer", 3, 9, 5)]).reward["mask"] == 1.5
    protocol.seg_sampled_masks = lambda ep: (
        [np.zeros(sample.target_masks.shape[1:], bool)] * len(spatial)
    )
    low = run(protocol, sample, [seg_turn("answer", 3, 9, 5)]).reward["mask"]
    assert low < 1.5 and propagated >= low
    old = make_protocol("o3", answer="seg", seg_mask_reward="propagated")
    old.seg_masks, old.seg_sampled_masks = gt_keyframe_masks, protocol.seg_sampled_masks
    assert run(old, sample, [seg_turn("answer", 3, 9, 5)]).reward["mask"] == propagated
