"""Cloud paths: a run whose workdir is a gs:// bucket, for real.

A local GCS emulator (gcp-storage-emulator, in memory) listens on a loopback port; gcsfs
(etils.epath) and tensorstore (orbax) are pointed at it through STORAGE_EMULATOR_HOST and
TENSORSTORE_GCS_HTTP_URL. The slow test trains a demo-sized run into the bucket (data,
processor, SFT + GRPO checkpoints, metrics, evaluation), resumes it, exports it to another
bucket folder and scores its predictions with `jaxseg eval`, all from gs:// paths; nothing
may appear as a local ``./gs:/...`` folder.
"""

from __future__ import annotations

import json
import logging
import os
import socket

import pytest

from jaxseg import cli

BUCKET = "jaxseg-test"
QUICK = [  # conftest.QUICK_DEMO's smallest run with every stage, without stage 0
    "sft.steps=2",
    "sft.num_examples=8",
    "grpo.steps=1",
    "grpo.prompts_per_step=2",
    "grpo.group_size=2",
    "grpo.max_new_tokens=24",
    "eval.max_expressions=4",
    "pretrain.steps=0",
    "grpo.eval_every=0",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def gcs():
    """An in-memory GCS emulator on a loopback port with bucket `jaxseg-test`."""
    # The emulator has no storage-control API: gcsfs's bucket-layout probe (on by default,
    # read at import) would retry it with GCE metadata lookups on every call.
    for key, value in _BEFORE_IMPORT.items():
        os.environ.setdefault(key, value)
    pytest.importorskip("gcsfs")
    server_mod = pytest.importorskip("gcp_storage_emulator.server")
    from gcp_storage_emulator.handlers import objects

    original_download = objects.download
    objects.download = _with_generation_headers(original_download)
    port = _free_port()
    server = server_mod.create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
    server.start()
    url = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in _ENV}
    os.environ.update(
        STORAGE_EMULATOR_HOST=url,  # gcsfs (etils.epath)
        TENSORSTORE_GCS_HTTP_URL=url,  # orbax's array writes
        GOOGLE_AUTH_TOKEN_FOR_TESTING="emulator",  # tensorstore: no credential lookup
    )
    for name in ("gcsfs", "gcp_storage_emulator"):  # credential / 404 probes are expected
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        yield url
    finally:
        server.stop()
        objects.download = original_download
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _with_generation_headers(download):
    """The emulator's media download, answering with the object's generation headers as GCS
    does (`x-goog-generation`, `x-goog-metageneration`): tensorstore reads its OCDBT manifest's
    generation from them and refuses a conditional write on a generation it could not parse
    ("Malformed StorageGeneration")."""
    from http import HTTPStatus

    def wrapped(request, response, storage, *args, **kwargs):
        download(request, response, storage, *args, **kwargs)
        if response.status in (HTTPStatus.OK, HTTPStatus.PARTIAL_CONTENT):
            obj = storage.get_file_obj(request.params["bucket_name"], request.params["object_id"])
            response["x-goog-generation"] = str(obj["generation"])
            response["x-goog-metageneration"] = str(obj.get("metageneration", "1"))

    return wrapped


_ENV = ("STORAGE_EMULATOR_HOST", "TENSORSTORE_GCS_HTTP_URL", "GOOGLE_AUTH_TOKEN_FOR_TESTING")
_BEFORE_IMPORT = {"GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false", "NO_GCE_CHECK": "true"}


def test_paths_round_trip_through_the_bucket(gcs, tmp_path, monkeypatch):
    from jaxseg.paths import as_path, is_remote, local_dir, staged_dir

    monkeypatch.setenv("JAXSEG_CACHE", str(tmp_path / "cache"))
    root = f"gs://{BUCKET}/paths"
    assert is_remote(root) and not is_remote(tmp_path)
    assert str(as_path(root) / "a") == f"gs://{BUCKET}/paths/a"  # not ./gs:/...
    with staged_dir(f"{root}/dir") as local:
        (local / "sub").mkdir()
        (local / "sub" / "x.txt").write_text("hello")
        (local / "y.bin").write_bytes(b"\x00\x01")
    assert (as_path(root) / "dir" / "sub" / "x.txt").read_text() == "hello"
    copy = local_dir(f"{root}/dir")
    assert (copy / "sub" / "x.txt").read_text() == "hello"
    assert (copy / "y.bin").read_bytes() == b"\x00\x01"
    with pytest.raises(FileNotFoundError):
        local_dir(f"{root}/nothing-here")


def test_metrics_in_a_bucket_append_and_rewind(gcs):
    from jaxseg.train.metrics import MetricsLogger, read_metrics

    stage = f"gs://{BUCKET}/metrics/sft"
    with MetricsLogger(stage) as log:
        for step in range(3):
            log.log("train", step, {"loss": float(step)})
    with MetricsLogger(stage) as log:  # a resumed stage appends after rewinding
        assert log.rewind(2) == 1
        log.log("train", 2, {"loss": 9.0})
    recs = read_metrics(f"{stage}/metrics.jsonl", "train")
    assert [(r["step"], r["loss"]) for r in recs] == [(0, 0.0), (1, 1.0), (2, 9.0)]
    from jaxseg.paths import as_path

    assert any(p.name.startswith("events") for p in (as_path(stage) / "tb").iterdir())


def test_wandb_offline_run_lands_in_the_bucket(gcs, monkeypatch):
    pytest.importorskip("wandb")
    from jaxseg.paths import as_path
    from jaxseg.train.metrics import MetricsLogger

    monkeypatch.setenv("WANDB_SILENT", "true")
    stage = f"gs://{BUCKET}/wandb-run/grpo"
    with MetricsLogger(stage, writers=("jsonl", "wandb"), wandb={"mode": "offline"}) as log:
        log.log("train", 0, {"loss": 0.5})
    (run_dir,) = [p for p in (as_path(stage) / "wandb" / "wandb").iterdir() if "offline" in p.name]
    (records,) = [p for p in run_dir.iterdir() if p.name.endswith(".wandb")]
    assert b"train/loss" in records.read_bytes()  # flushed before the upload


def test_data_synth_into_a_bucket(gcs, capsys):
    from jaxseg.paths import as_path

    out = f"gs://{BUCKET}/synth"
    argv = ["data", "synth", "--out", out, "--videos", "1", "--valid-videos", "1"]
    assert cli.main([*argv, "--frames", "6", "--quiet"]) == 0
    assert f"wrote {out}" in capsys.readouterr().err
    names = {p.name for p in as_path(out).iterdir()}
    assert {"JPEGImages", "mask_dict.json"} <= names, names


@pytest.mark.slow
def test_train_resume_export_eval_in_a_bucket(gcs, tmp_path, monkeypatch, capsys):
    from jaxseg.paths import as_path

    monkeypatch.setenv("JAXSEG_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)  # a path bug would leave ./gs:/... here
    run = f"gs://{BUCKET}/runs/quick"
    args = ["train", "--config", "demo:quick", "--workdir", run, "--no-progress"]
    for o in QUICK:
        args += ["--set", o]

    # 1. train: data, SFT, GRPO and eval, all in the bucket
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert f"wrote {run}/config.json" in out and f"wrote {run}/data/synth" in out
    root = as_path(run)
    for name in ("config.json", "processor/tokenizer.json", "data/synth/jaxseg_synth.json"):
        assert (root / name).is_file(), name
    for stage in ("sft", "grpo"):
        assert [p.name for p in (root / stage / "ckpt").iterdir() if p.name.isdigit()]
        assert (root / stage / "metrics.jsonl").read_text().strip()
    summary = json.loads((root / "eval" / "grpo" / "summary.json").read_text())
    assert summary["tag"] == "grpo" and "JF" in summary["overall"]
    assert not (tmp_path / "gs:").exists()

    # 2. resume: every stage is found finished in the bucket and skipped
    assert cli.main(args) == 0
    capsys.readouterr()
    sft_steps = [json.loads(x)["step"] for x in (root / "sft" / "metrics.jsonl").open()]
    assert sft_steps == sorted(set(sft_steps))  # no step ran twice
    # ... and a changed config is refused (item 2), listing the key
    assert cli.main([*args, "--set", "grpo.kl_coef=0.5"]) == 2
    assert "grpo.kl_coef" in capsys.readouterr().err

    # 3. export to another bucket folder
    export = f"gs://{BUCKET}/exports/quick"
    assert cli.main(["export", "--checkpoint", run, "--out", export]) == 0
    assert f"wrote {export}" in capsys.readouterr().out
    names = {p.name for p in as_path(export).iterdir()}
    assert {"config.json", "generation_config.json", "tokenizer.json"} <= names
    assert any(n.endswith(".safetensors") for n in names)

    # 4. score the run's predictions from the bucket, results JSON into the bucket
    results = f"gs://{BUCKET}/runs/quick/eval/grpo/rescored.json"
    rc = cli.main(
        ["eval", "--pred", f"{run}/eval/grpo/pred", "--data", f"{run}/data/synth"]
        + ["--split", "valid", "--out", results]
    )
    assert rc == 0, capsys.readouterr().err
    rescored = json.loads(as_path(results).read_text())
    assert rescored["summary"]["overall"]["JF"] == pytest.approx(summary["overall"]["JF"])

    # 5. the demo's report of a bucket run is written into the bucket
    from jaxseg.commands.demo import _report

    report = _report(run, f"{run}/data/synth")
    assert str(report) == f"{run}/report.md"
    assert "Held-out results" in report.read_text() and (root / "curves.png").is_file()
    assert not (tmp_path / "gs:").exists()
