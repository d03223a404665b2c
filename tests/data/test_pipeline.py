"""grain pipeline: batches, determinism per seed, resume from iterator state, workers."""

import numpy as np
import pytest

from jaxseg.data.encode import ByteEncode, user_prompt
from jaxseg.data.pipeline import PipelineConfig, build_dataset
from jaxseg.data.readers import read_revos
from jaxseg.data.readers.layouts import ExpressionSpec, VideoSpec, write_revos

T, S = 7, 20


def videos(n=5):
    rng = np.random.default_rng(3)
    out = []
    for v in range(n):
        masks = np.zeros((T, S, S), dtype=bool)
        for t in range(T):
            size = 2 + (t * (v + 1)) % 9  # target area varies over time
            masks[t, 2 : 2 + size, 3 : 3 + size] = True
        out.append(
            VideoSpec(
                f"video{v}",
                rng.integers(0, 255, (T, S, S, 3), dtype=np.uint8),
                {1: masks},
                [
                    ExpressionSpec(f"object {v}", [1], v % 2),
                    ExpressionSpec(f"ghost {v}", [], 2),
                ],
            )
        )
    return out


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    root = tmp_path_factory.mktemp("revos")
    write_revos(root, videos(), split="train")
    return read_revos(root, "train")


def batches(ds, n=None):
    it = iter(ds)
    return [b for _, b in zip(range(n), it)] if n else list(it)


def assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def test_batch_contents(index):
    cfg = PipelineConfig(num_frames=4, frame_size=(12, 16), batch_size=3, shuffle=False)
    first = batches(build_dataset(index, cfg), 1)[0]
    assert first["frames"].shape == (3, 4, 12, 16, 3) and first["frames"].dtype == np.uint8
    assert first["masks"].shape == (3, 4, 12, 16)
    np.testing.assert_array_equal(first["frame_ids"][0], [0, 2, 4, 6])  # linspace(0, 6, 4)
    assert first["input_ids"].shape[1] in cfg.seq_buckets
    # left padding: the prompt ends at the last column
    rec = index[0]
    assert first["video_id"][0] == rec.video_id and first["exp_id"][0] == rec.exp_id
    assert first["attention_mask"][0, -1] == 1 and first["attention_mask"][0, 0] == 0
    n = int(first["attention_mask"][0].sum())
    text = bytes((first["input_ids"][0, -n:] - 1).astype(np.uint8)).decode()
    assert text.startswith("(0s)<image>, (2s)<image>, (4s)<image>, (6s)<image>")
    assert "'object 0'" in text
    # null expression: empty target masks
    ghost = [i for i in range(3) if first["type_id"][i] == 2]
    assert ghost and not first["masks"][ghost[0]].any()


def test_keyframe_sampling_pads_to_n_frames(index):
    cfg = PipelineConfig(num_frames=4, sampling="keyframe", frame_size=None, batch_size=4)
    for batch in batches(build_dataset(index, cfg, seed=1)):
        valid = batch["frame_valid"]
        for i in range(len(valid)):
            pos = batch["positions"][i][valid[i]]
            k = batch["keyframe"][i]
            assert k in pos  # the pseudo-keyframe is always shown
            assert np.all(batch["positions"][i][~valid[i]] == -1)


def test_deterministic_per_seed_and_resumable(index):
    cfg = PipelineConfig(
        num_frames=3, sampling="keyframe", frame_size=(8, 8), batch_size=2, num_epochs=2
    )
    run_a = batches(build_dataset(index, cfg, seed=7))
    run_b = batches(build_dataset(index, cfg, seed=7))
    assert_same(run_a, run_b)
    assert len(run_a) == 10  # 10 expressions x 2 epochs / batch 2
    other = batches(build_dataset(index, cfg, seed=8))
    assert [list(b["video_id"]) for b in other] != [list(b["video_id"]) for b in run_a]
    # resume: take 4 batches (crossing into epoch 2 at batch 5 later), save, restore
    ds = build_dataset(index, cfg, seed=7)
    it = iter(ds)
    head = [next(it) for _ in range(4)]
    state = it.get_state()
    tail = list(it)
    resumed = iter(build_dataset(index, cfg, seed=7))
    resumed.set_state(state)
    assert_same(tail, list(resumed))
    assert_same(head + tail, run_a)


def test_two_workers_give_the_same_stream(index):
    cfg = PipelineConfig(num_frames=3, frame_size=(8, 8), batch_size=2, num_epochs=1)
    single = batches(build_dataset(index, cfg, seed=3))
    multi_cfg = PipelineConfig(num_frames=3, frame_size=(8, 8), batch_size=2, worker_count=2)
    ds = build_dataset(index, multi_cfg, seed=3)
    it = iter(ds)
    head = [next(it) for _ in range(2)]
    state = it.get_state()
    rest = list(it)
    assert_same(head + rest, single)
    resumed = iter(build_dataset(index, multi_cfg, seed=3))
    resumed.set_state(state)
    assert_same(list(resumed), rest)


def test_prompt_uses_absolute_frame_indices():
    from jaxseg.data.encode import Clip

    clip = Clip(
        "v",
        "0",
        "The red one.",
        0,
        np.zeros((2, 4, 4, 3), np.uint8),
        None,
        np.array([15, 40]),
        np.array([3, 8]),
        -1,
        (4, 4),
    )
    text = user_prompt(clip)
    assert text.startswith("(15s)<image>, (40s)<image>\n")
    assert "'the red one'" in text
    ids = ByteEncode()(clip)["input_ids"]
    assert ids.min() >= 1


def test_iterator_state_round_trips_through_an_orbax_checkpoint(index, tmp_path):
    grain = pytest.importorskip("grain")
    ocp = pytest.importorskip("orbax.checkpoint")
    cfg = PipelineConfig(num_frames=3, sampling="keyframe", frame_size=(8, 8), batch_size=2)
    it = iter(build_dataset(index, cfg, seed=5))
    for _ in range(2):
        next(it)
    handlers = {"data": grain.checkpoint.CheckpointHandler()}
    mgr = ocp.CheckpointManager(tmp_path / "ckpt", item_names=("data",), item_handlers=handlers)
    mgr.save(2, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(it)))
    mgr.wait_until_finished()
    expected = list(it)
    restored = iter(build_dataset(index, cfg, seed=5))
    mgr = ocp.CheckpointManager(tmp_path / "ckpt", item_names=("data",), item_handlers=handlers)
    mgr.restore(2, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(restored)))
    assert_same(list(restored), expected)


def test_undecodable_frame_raises_or_is_dropped(tmp_path):
    from jaxseg.data.readers import DataFormatError
    from jaxseg.data.readers.errors import BadInputWarning

    write_revos(tmp_path, videos(2), split="train")
    index = read_revos(tmp_path, "train", verify_frames=False)
    # a truncated JPEG passes a header check but cannot be decoded
    frame = tmp_path / "JPEGImages" / "video1" / "00000.jpg"
    frame.write_bytes(frame.read_bytes()[:200])
    cfg = PipelineConfig(num_frames=3, frame_size=(8, 8), batch_size=8, shuffle=False)
    with pytest.raises(DataFormatError, match=r"video1/00000\.jpg"):
        batches(build_dataset(index, cfg))
    skip = PipelineConfig(
        num_frames=3, frame_size=(8, 8), batch_size=8, shuffle=False, skip_bad=True
    )
    with pytest.warns(BadInputWarning, match="dropped clip"):
        (batch,) = batches(build_dataset(index, skip))
    assert list(batch["video_id"]) == ["video0", "video0"]


def test_keyframe_shows_the_target_on_a_synthetic_split(tmp_path):
    """On generated data (partially visible targets), the keyframe-centred sampler always
    includes a frame where the target is visible, unless the query is a null one."""
    import importlib

    synth = importlib.import_module("jaxseg.data.synth")
    cfg = synth.SynthConfig.preset("medium", size=64, frames=(12, 12))
    synth.write_benchmark(tmp_path, {"train": 4}, seed=11, cfg=cfg, progress=False)
    index = read_revos(tmp_path, "train")
    pipe = PipelineConfig(num_frames=5, sampling="keyframe", frame_size=None, batch_size=4)
    seen = 0
    for batch in batches(build_dataset(index, pipe, seed=0)):
        for i in range(len(batch["video_id"])):
            slot = list(batch["positions"][i]).index(batch["keyframe"][i])
            visible = batch["masks"][i, slot].any()
            assert visible == (batch["type_id"][i] != 2)
            seen += 1
    assert seen == len(index)


def test_every_epoch_is_a_new_permutation(index):
    cfg = PipelineConfig(num_frames=2, frame_size=(4, 4), batch_size=len(index), num_epochs=3)
    epochs = [
        [f"{v}/{e}" for v, e in zip(b["video_id"], b["exp_id"])]
        for b in batches(build_dataset(index, cfg, seed=2))
    ]
    keys = sorted(r.key for r in index)
    assert len(epochs) == 3 and all(sorted(e) == keys for e in epochs)
    assert epochs[0] != epochs[1] != epochs[2]
