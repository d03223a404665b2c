"""Fault soak (slow tier): GRPO with the SAM2 sidecar while the sidecar is killed
every few seconds, the trainer is SIGKILLed twice and one checkpoint is corrupted, ends with
the metrics and weights of an undisturbed run (bench/fault_soak.py does the work)."""

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("sam2")
pytest.importorskip("torch")


def _bench():
    path = Path(__file__).resolve().parents[2] / "bench" / "fault_soak.py"
    spec = importlib.util.spec_from_file_location("fault_soak", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_fault_soak_ends_like_an_undisturbed_run(tmp_path):
    report = _bench().soak(tmp_path, steps=6, kill_every=5.0, trainer_kills=(2, 4))
    assert report["trainer_kills"] == 2 and report["checkpoints_corrupted"] == 1
    assert report["sidecar_kills"] >= 1 and report["sidecar_restarts"] >= 1
    assert report["checkpoint_fallbacks"] == 1 and report["steps_replayed"] >= 1
    assert not report["metric_differences"], report["metric_differences"]
    assert not report["nan_or_null"] and report["final_weights_equal"]
    assert report["checkpoints_soak"] == report["checkpoints_reference"]
    assert len(report["broken_kept"]) == 1 and report["ok"]
