"""Logging for clusters: without a TTY (or with --no-progress) a training
loop logs plain lines with level and timestamp every N steps instead of tqdm's bars; only
process 0 logs; metrics go through one writer interface (JSONL, TensorBoard, W&B offline)."""

from __future__ import annotations

import io
import logging
import re
import time

import pytest

from jaxseg.train import progress
from jaxseg.train.metrics import MetricsLogger, read_metrics


@pytest.fixture
def lines(monkeypatch):
    """The jaxseg.train log as text lines, through the CLI's handler."""
    stream = io.StringIO()
    handler = progress.log_handler(stream)
    logger = logging.getLogger("jaxseg.train")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    monkeypatch.setattr(progress, "interactive", lambda: False)  # a cluster job's log file
    yield lambda: [x for x in stream.getvalue().splitlines() if x]
    logger.removeHandler(handler)
    logger.setLevel(old_level)


LINE = re.compile(r"^I\d{4} \d\d:\d\d:\d\d\.\d{3} jaxseg\.train\] ")


def test_plain_log_lines_every_n_steps_without_a_tty(lines):
    progress.configure(log_every=2)
    bar = progress.tqdm(range(3, 8), desc="grpo")
    assert isinstance(bar, progress.LogProgress)
    for step in bar:
        bar.set_postfix(reward=f"{step / 10:.2f}")
    out = lines()
    assert all(LINE.match(x) for x in out), out
    # steps done 1, 2, 4 (every 2) and the last, 5 of 5: as run steps 4, 5, 7, 8 of 8
    assert [re.search(r"grpo step (\d+)/8", x).group(1) for x in out] == ["4", "5", "7", "8"]
    assert "reward=0.70" in out[-1] and "s/step" in out[-1]
    assert not any("\r" in x for x in out)


def test_no_progress_still_logs_and_tqdm_write_is_a_log_line(lines):
    progress.configure(log_every=1)
    bar = progress.tqdm(total=2, desc="eval veason", disable=True)  # --no-progress
    bar.update(1)
    bar.update(1)
    bar.close()
    progress.tqdm.write("resume: skipped checkpoint step 4")
    out = lines()
    assert [x.split("] ", 1)[1].split(" 0")[0] for x in out[:2]] == [
        "eval veason step 1/2 (50%)",
        "eval veason step 2/2 (100%)",
    ]
    assert out[2].endswith("resume: skipped checkpoint step 4")


def test_only_process_0_logs(lines, monkeypatch):
    monkeypatch.setattr(progress, "process_index", lambda: 1)
    progress.configure(log_every=1)
    for _ in progress.tqdm(range(3), desc="sft"):
        pass
    progress.tqdm.write("hello")
    logging.getLogger("jaxseg.train").info("an info line")
    logging.getLogger("jaxseg.train").warning("a warning")
    assert [x.split("] ", 1)[1] for x in lines()] == ["a warning"]


def test_a_terminal_gets_a_bar(monkeypatch):
    monkeypatch.setattr(progress, "interactive", lambda: True)
    bar = progress.tqdm(range(2), desc="sft", file=io.StringIO())
    assert not isinstance(bar, progress.LogProgress)
    bar.close()
    silent = progress.tqdm(range(2), desc="sft", disable=True)
    assert isinstance(silent, progress.LogProgress)  # --no-progress: log lines, no bar


def test_writers_jsonl_tensorboard_wandb_offline(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    stage = tmp_path / "run" / "grpo"
    with MetricsLogger(
        stage, writers=("jsonl", "tensorboard", "wandb"), wandb={"mode": "offline"}
    ) as log:
        for step in range(3):
            log.log("train", step, {"loss": 1.0 / (step + 1), "reward/mean": 0.1 * step})
        log.log("eval", 2, {"JF": 0.25})
    assert [r["step"] for r in read_metrics(stage / "metrics.jsonl", "train")] == [0, 1, 2]
    assert any(p.name.startswith("events") for p in (stage / "tb").iterdir())
    (run_dir,) = (stage / "wandb" / "wandb").glob("offline-run-*")
    (records,) = run_dir.glob("*.wandb")  # what `wandb sync` uploads: protobuf records
    deadline = time.time() + 60  # wandb-core may still be flushing after finish() on a busy box
    while b"eval/JF" not in (data := records.read_bytes()) and time.time() < deadline:
        time.sleep(0.5)
    # each history item is its key followed by its JSON value (a few framing bytes between)
    assert re.search(rb"train/reward/mean.{1,6}0\.2\b", data, re.S)
    assert re.search(rb"eval/JF.{1,6}0\.25", data, re.S)
    assert len(re.findall(rb"train/loss", data)) >= 3


def test_writers_from_config_and_unknown_writer(tmp_path):
    from ml_collections import ConfigDict

    cfg = ConfigDict({"metrics": {"writers": ("jsonl",), "log_every": 5}})
    with MetricsLogger.from_config(tmp_path / "s", cfg) as log:
        assert [type(w).__name__ for w in log.writers] == ["JsonlWriter"]
    with pytest.raises(ValueError, match="unknown \\['mlflow'\\]"):
        MetricsLogger(tmp_path / "t", writers=("jsonl", "mlflow"))


def test_third_party_bars_only_on_a_terminal_of_process_0(monkeypatch):
    """Code with its own tqdm (synthetic data, cold-start traces) asks `bars` first."""
    monkeypatch.setattr(progress, "interactive", lambda: False)
    assert not progress.bars(True)
    monkeypatch.setattr(progress, "interactive", lambda: True)
    assert progress.bars(True) and not progress.bars(False)
    monkeypatch.setattr(progress, "process_index", lambda: 1)
    assert not progress.bars(True)
