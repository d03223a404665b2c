import math

from jaxseg.train.metrics import MetricsLogger, read_metrics


def test_jsonl_round_trip_and_resume(tmp_path):
    with MetricsLogger(tmp_path) as log:
        log.log("train", 1, {"loss": 2.0, "nan": math.nan})
        log.log("train", 2, {"loss": 1.5})
        log.log("eval", 2, {"jf": 40.0})
    with MetricsLogger(tmp_path, tensorboard=False) as log:  # a resumed run re-logs step 2
        log.log("train", 2, {"loss": 1.25})
    train = read_metrics(tmp_path / "metrics.jsonl", "train")
    assert [(r["step"], r["loss"]) for r in train] == [(1, 2.0), (2, 1.25)]
    assert train[0]["nan"] is None
    assert read_metrics(tmp_path / "metrics.jsonl", "eval")[0]["jf"] == 40.0
    assert any((tmp_path / "tb").iterdir())
