"""Faults injected into checkpoints and metrics: flipped bytes, deleted or broken
metadata, half the files gone, a stray empty step folder, NaN steps vs keep-N rotation, a
resumed run's metrics, the non-finite guard."""

import json
import math
import os
import re
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxseg.train.checkpoint import (
    CheckpointCorrupt,
    Checkpointer,
    CheckpointMismatch,
    abstract_like,
)
from jaxseg.train.faults import NonFiniteError, NonFiniteGuard
from jaxseg.train.metrics import MetricsLogger, read_metrics

ITEMS = ("params", "opt")


def _state(i: int):
    k = jax.random.key(i)
    return {
        "params": {"w": jax.random.normal(k, (128, 128)), "b": jax.numpy.full((4,), float(i))},
        "opt": {"count": jax.numpy.int32(i), "mu": jax.random.normal(k, (16,))},
    }


def _run(path: Path, steps=(0, 1, 2), keep=3, finite=None) -> None:
    with Checkpointer(path, max_to_keep=keep, item_names=ITEMS) as ckpt:
        for s in steps:
            meta = {"next_step": s + 1}
            if finite is not None:
                meta["finite"] = finite(s)
            ckpt.save(s, _state(s), meta, force=True)


def _flip(folder: Path, count: int = 4096) -> Path:
    data = [f for f in folder.rglob("*") if f.is_file() and f.parent.name == "d"]
    target = max(data, key=lambda f: f.stat().st_size)
    blob = bytearray(target.read_bytes())
    start = len(blob) // 4
    for i in range(start, min(start + count, len(blob))):
        blob[i] ^= 0x5A
    target.write_bytes(bytes(blob))
    return target


def _tamper_checksum(step: Path) -> None:
    """What zstd does not catch (flips that still decompress): the data no longer has the
    checksum saved with it; here the recorded checksum changes instead."""
    path = step / "meta" / "metadata"
    meta = json.loads(path.read_text())
    meta["_integrity"]["params"]["w"][2] ^= 1
    path.write_text(json.dumps(meta))


def _restore(path: Path):
    with Checkpointer(path, item_names=ITEMS) as ckpt:
        return ckpt.restore_intact(abstract_like(_state(0)))


def _assert_is_step(state, i):
    want = _state(i)
    for item in ITEMS:
        for key in want[item]:
            np.testing.assert_array_equal(np.asarray(state[item][key]), want[item][key])


def _break_nothing(step: Path):
    del step


@pytest.mark.parametrize(
    "fault, reason",
    [
        (lambda s: _flip(s / "params"), r"checksum mismatch|Data corruption detected"),
        (_tamper_checksum, r"checksum mismatch in params/w \(float32\[128, 128\]\)"),
        (lambda s: os.remove(s / "params" / "_METADATA"), r"params/_METADATA: missing"),
        (
            lambda s: (s / "opt" / "_METADATA").write_text('{"tree_metadata": {'),
            r"opt/_METADATA: unreadable orbax metadata",
        ),
        (
            lambda s: (s / "meta" / "metadata").write_text("{not json"),
            r"meta/metadata: not valid JSON",
        ),
        (
            lambda s: [os.remove(f) for f in sorted(s.rglob("*")) if f.is_file()][::2],
            r"missing|failed",
        ),
        (
            lambda s: [
                os.remove(f) for f in sorted(s.rglob("*")) if f.is_file() and f.parent.name == "d"
            ],
            r"reading the arrays failed",
        ),
    ],
    ids=[
        "flipped-bytes",
        "checksum-differs",
        "no-_METADATA",
        "broken-metadata-json",
        "broken-meta",
        "half-deleted",
        "data-deleted",
    ],
)
def test_damaged_newest_step_falls_back_to_the_newest_intact(tmp_path, fault, reason):
    _run(tmp_path)
    fault(tmp_path / "2")
    step, state, meta, skipped = _restore(tmp_path)
    assert step == 1 and meta == {"next_step": 2}
    _assert_is_step(state, 1)
    assert [s for s, _ in skipped] == [2]
    assert str(tmp_path / "2") in skipped[0][1]
    assert re.search(reason, skipped[0][1]), skipped[0][1]
    # kept for inspection, out of the step list: the run saves step 2 again
    assert not (tmp_path / "2").exists()
    assert [p.name.split("-")[0] for p in (tmp_path / "broken").iterdir()] == ["2"]
    _run(tmp_path, steps=(2,))
    step, state, _, skipped = _restore(tmp_path)
    assert step == 2 and not skipped
    _assert_is_step(state, 2)


def test_stray_empty_step_folder_is_skipped_and_named(tmp_path):
    _run(tmp_path, steps=(0, 1))
    (tmp_path / "9").mkdir()
    step, state, _, skipped = _restore(tmp_path)
    assert step == 1
    assert skipped == [(9, f"{tmp_path / '9'}: empty step folder (a save that never started)")]
    _run(tmp_path, steps=(2, 3))  # resumable: later saves are not blocked by it
    assert _restore(tmp_path)[0] == 3


def test_only_empty_step_folders_start_over(tmp_path):
    (tmp_path / "4").mkdir()
    step, state, meta, skipped = _restore(tmp_path)
    assert step is None and state is None and [s for s, _ in skipped] == [4]
    assert not (tmp_path / "4").exists()
    _run(tmp_path, steps=(4,))
    assert _restore(tmp_path)[0] == 4


def test_no_intact_step_lists_every_reason_and_moves_nothing(tmp_path):
    _run(tmp_path, steps=(0, 1))
    os.remove(tmp_path / "1" / "params" / "_METADATA")
    _flip(tmp_path / "0" / "params")
    with pytest.raises(CheckpointCorrupt, match=r"no intact checkpoint.*step 1: .*step 0: .*"):
        _restore(tmp_path)
    assert (tmp_path / "0").is_dir() and (tmp_path / "1").is_dir()


def test_other_structure_is_a_mismatch_not_corruption(tmp_path):
    _run(tmp_path, steps=(0,))
    target = _state(0)
    target["params"]["lora_a"] = target["params"]["b"]
    with (
        Checkpointer(tmp_path, item_names=ITEMS) as ckpt,
        pytest.raises(CheckpointMismatch, match=r"1 wanted but absent, e.g. \['lora_a'\]"),
    ):
        ckpt.restore_intact(abstract_like(target))
    assert (tmp_path / "0").is_dir()


def test_reader_changes_nothing(tmp_path):
    """A read-only reader (export, eval, the next stage) of a run that may be saving: no
    damaged step moved, no partial save cleaned up, no rotation."""
    _run(tmp_path)
    _flip(tmp_path / "2" / "params")
    partial = tmp_path / "3.orbax-checkpoint-tmp-123"
    partial.mkdir()
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    with Checkpointer(tmp_path, item_names=ITEMS, max_to_keep=1, read_only=True) as ckpt:
        step, _, _, skipped = ckpt.restore_intact(abstract_like(_state(0)))
    assert step == 1 and skipped[0][0] == 2
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


def test_rotation_never_deletes_the_newest_finite_step(tmp_path):
    """Steps 2.. were written after non-finite steps: keep-2 rotation keeps 1 as well."""
    _run(tmp_path, steps=range(6), keep=2, finite=lambda s: s < 2)
    with Checkpointer(tmp_path, item_names=ITEMS) as ckpt:
        assert ckpt.all_steps() == [1, 4, 5]
    _run(tmp_path, steps=(6, 7), keep=2, finite=lambda s: True)
    with Checkpointer(tmp_path, item_names=ITEMS) as ckpt:
        assert ckpt.all_steps() == [6, 7]


def test_metrics_rewind_drops_rerun_steps_and_torn_lines(tmp_path):
    with MetricsLogger(tmp_path, tensorboard=False) as log:
        for s in range(5):
            log.log("train", s, {"loss": float(s)})
        log.log("eval", 3, {"JF": 0.5})
    with (tmp_path / "metrics.jsonl").open("a") as f:
        f.write('{"kind": "train", "step": 5, "lo')  # SIGKILL mid-write
    with MetricsLogger(tmp_path, tensorboard=False) as log:
        assert log.rewind(3) == 4
        for s in range(3, 5):
            log.log("train", s, {"loss": 10.0 + s})
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["kind"], r["step"]) for r in lines] == [("train", s) for s in range(5)]
    assert [r["loss"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [0, 1, 2, 13, 14]


def test_guard_counts_skips_and_aborts_after_the_limit():
    guard = NonFiniteGuard("grpo", 2, skipped_before=1)
    ok = {"loss": 1.0, "grad_norm": 2.0, "skipped": 0.0}
    bad = {"loss": math.nan, "grad_norm": math.nan, "skipped": 1.0}
    guard.check(0, dict(ok))
    assert guard.checkpoint_meta() == {"finite": True, "nonfinite_skipped": 1}
    m = dict(bad)
    guard.check(1, m)
    assert m["nonfinite_skipped"] == 2
    guard.check(2, dict(ok))  # the run of skips restarts
    guard.check(3, dict(bad))
    guard.check(4, dict(bad))
    assert guard.checkpoint_meta() == {"finite": False, "nonfinite_skipped": 4}
    with pytest.raises(NonFiniteError, match=r"grpo step 5: .*3 consecutive.*max_nonfinite=2"):
        guard.check(5, dict(bad))
    with pytest.raises(NonFiniteError, match="step 0"):
        NonFiniteGuard("sft", 0).check(0, {"loss": math.inf, "grad_norm": 1.0})
