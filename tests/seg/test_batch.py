"""[SEG] slots of a conversation, their padding into a SegBatch, and the feature store."""

import types

import numpy as np
import pytest

from jaxseg.seg.batch import SegSlots, SlotData, SlotShapes, make_seg_batch, resize_mask, seg_slots
from jaxseg.seg.features import FeatureStore
from jaxseg.train.batch import make_policy_batch

SEG = 7


def test_seg_slots_skip_prompt_seg_and_number_turns():
    #          prompt [SEG]      turn 0        user        turn 1
    ids = np.array([1, SEG, 2, 3, SEG, 4, 5, 6, 8, SEG, 9, SEG])
    mask = np.array([0, 0, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1])
    s = seg_slots(ids, mask, SEG, num_turns=2)
    assert s.index.tolist() == [4, 9, 11] and s.turn.tolist() == [0, 1, 1]
    with pytest.raises(ValueError, match="2 policy-token runs but 3 turns"):
        seg_slots(ids, mask, SEG, num_turns=3)


def test_oracle_seg_conversation_has_one_seg_per_turn(target_samples):
    """The cold-start encoding: each assistant turn is one policy run with one [SEG]."""
    from jaxseg.data.chat import ChatEncoder
    from jaxseg.data.tokenizer import build_processor, build_tokenizer
    from jaxseg.protocols import make_protocol
    from jaxseg.protocols.episode import play_episodes
    from jaxseg.protocols.o3 import gt_keyframe_masks
    from jaxseg.protocols.scripted import OraclePolicy
    from jaxseg.train.rollouts import RecordingPolicy

    processor = build_processor(build_tokenizer(400, texts=["the red square"] * 5))
    seg_id = processor.tokenizer.convert_tokens_to_ids("[SEG]")
    protocol = make_protocol("o3", answer="seg", max_turns=2, temporal_frames=2, spatial_frames=2)
    protocol.seg_masks = gt_keyframe_masks
    samples = target_samples[:2]
    rec = RecordingPolicy(OraclePolicy(protocol, samples))
    episodes, _ = play_episodes(protocol, rec, samples)
    for ep, conv in zip(episodes, rec.state.conversations):
        clean = [{k: v for k, v in m.items() if k != "meta"} for m in conv]
        ex = ChatEncoder(processor).encode(clean).as_example()
        s = seg_slots(ex["input_ids"], ex["policy_mask"], seg_id, num_turns=len(ep.texts))
        assert s.turn.tolist() == list(range(len(ep.texts)))  # one [SEG] per turn
        assert (ex["input_ids"] == seg_id).sum() > len(s.index)  # the system prompt has one


def test_make_seg_batch_pads_slots_and_keeps_seg_free_rows(qwen_config):
    shapes = SlotShapes.for_decoder(16, 2)
    rng = np.random.default_rng(0)
    examples = [
        {"input_ids": np.arange(10) + 10, "policy_mask": np.r_[np.zeros(5), np.ones(5)]},
        {"input_ids": np.arange(8) + 10, "policy_mask": np.r_[np.zeros(4), np.ones(4)]},
    ]
    pb = make_policy_batch(examples, config=qwen_config, length_buckets=(16,))
    n = 3
    row = SlotData(
        SegSlots(np.array([5, 7, 9], np.int32), np.zeros(3, np.int32)),
        rng.standard_normal((n,) + shapes.embed).astype(np.float32),
        rng.standard_normal((n,) + shapes.hr0).astype(np.float32),
        rng.standard_normal((n,) + shapes.hr1).astype(np.float32),
        (rng.random((n,) + shapes.mask) > 0.5).astype(np.float32),
        rng.standard_normal((n,) + shapes.mask).astype(np.float32),
    )
    empty = SlotData(
        SegSlots(np.zeros(0, np.int32), np.zeros(0, np.int32)),
        *(np.zeros((0,) + sh, np.float32) for sh in (shapes.embed, shapes.hr0, shapes.hr1)),
        np.zeros((0,) + shapes.mask, np.float32),
    )
    b = make_seg_batch(pb, [row, empty], shapes)
    assert b.seg_index.tolist() == [[5, 7, 9, -1], [-1, -1, -1, -1]]  # K bucket 4
    assert b.mask_count.tolist() == [3, 0]
    np.testing.assert_array_equal(np.asarray(b.image_embed[0, :3]), row.embed)
    np.testing.assert_array_equal(np.asarray(b.rollout_logits[0, :3]), row.rollout)
    assert not np.asarray(b.image_embed[1]).any() and not np.asarray(b.gt_valid[1]).any()
    assert b.high_res_feats[0].shape == (2, 4) + shapes.hr0
    with pytest.raises(ValueError, match="1 slot rows for a batch of 2"):
        make_seg_batch(pb, [row], shapes)


def test_resize_mask_area_threshold():
    m = np.zeros((8, 8), bool)
    m[:4, :4] = True
    m[0, 4] = True  # 1/4 of a 2x2 cell: below half, dropped
    out = resize_mask(m, 4)
    assert out.tolist() == [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]


class FakeSidecar:
    def __init__(self):
        self.calls = []

    def register_video(self, frames, video_id=None):
        return video_id

    def image_features(self, handle, frames):
        self.calls.append(list(frames))
        f = np.asarray(frames, np.float32)[:, None, None, None]
        return types.SimpleNamespace(
            image_embed=f + np.zeros((1, 4, 2, 2)),
            high_res_0=f + np.zeros((1, 2, 8, 8)),
            high_res_1=f + np.zeros((1, 2, 4, 4)),
        )


def test_feature_store_caches_per_frame():
    backend = FakeSidecar()
    store = FeatureStore(backend, max_frames=3)
    frames = np.zeros((5, 8, 8, 3), np.uint8)
    embed, hr0, _ = store.get(frames, [3, 1, 3])
    assert backend.calls == [[1, 3]]
    assert embed[:, 0, 0, 0].tolist() == [3, 1, 3] and hr0.shape == (3, 2, 8, 8)
    store.get(frames, [1, 4])
    assert backend.calls == [[1, 3], [4]] and store.hits == 2  # 3 (twice in one call), 1
    store.get(frames, [0])  # evicts the least recently used (3)
    store.get(frames, [3])
    assert backend.calls[-1] == [3]
    with pytest.raises(ValueError, match="no image_features"):
        FeatureStore(object())
