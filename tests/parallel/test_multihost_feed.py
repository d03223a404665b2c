"""A 2-process training run reads disjoint grain shards and resumes mid-epoch exactly."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

TESTS_DIR = Path(__file__).resolve().parents[1]
REPO = TESTS_DIR.parent
WORKER = str(Path(__file__).with_name("multihost_resume.py"))


def _results(proc) -> list[dict]:
    decoder = json.JSONDecoder()
    out = [
        decoder.raw_decode(proc.stdout, m.end())[0] for m in re.finditer(r"RESULT ", proc.stdout)
    ]
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return sorted(out, key=lambda r: r["index"])


@pytest.mark.slow
def test_two_hosts_read_disjoint_shards_and_resume_mid_epoch(tmp_path):
    """SFT (4 steps, 2 an epoch) as one plain process, and as 2 processes (data 2 x fsdp 4)
    stopped inside step 1 (the middle of epoch 0) then resumed from their checkpoint. Each
    host reads only its half of every step (disjoint, together the plain run's batch in
    order); the resumed run starts at step 1 from the checkpointed iterator state, so every
    step is trained exactly once, and the params equal the unbroken plain run's."""
    from jaxseg.commands.train import ensure_data
    from jaxseg.config import load_config

    data = tmp_path / "data"
    ensure_data(load_config("demo:quick", [f"data.root={data}"]), progress=False)
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    env["PYTHON"] = sys.executable
    (plain,) = _results(
        subprocess.run(
            [sys.executable, WORKER, str(data), str(tmp_path / "plain"), str(tmp_path / "plain.npz"), "-1"],
            env=dict(env, JAX_PLATFORMS="cpu"), capture_output=True, text=True, timeout=600,
        )
    )  # fmt: skip
    launch = [str(REPO / "launch" / "local.sh"), "--processes", "2", "--devices-per-process", "4"]

    def multi(stop_at: int) -> list[dict]:
        cmd = [sys.executable, WORKER, str(data), str(tmp_path / "multi"),
               str(tmp_path / "multi.npz"), str(stop_at), "2x4"]  # fmt: skip
        proc = subprocess.run(
            ["bash", *launch, "--", *cmd], env=env, capture_output=True, text=True, timeout=900
        )
        results = _results(proc)
        assert [(r["index"], r["count"]) for r in results] == [(0, 2), (1, 2)]
        return results

    stopped, resumed = multi(1), multi(-1)
    whole = {step: positions for step, _, positions in plain["read"]}
    assert sorted(whole) == [0, 1, 2, 3] and not plain["stopped"]
    epoch0 = whole[0] + whole[1]
    assert len(set(epoch0)) == 8  # an epoch reads each of the 8 examples once
    for run in (stopped, resumed):
        for s in {step for r in run for step, _, _ in r["read"]}:
            (a,) = [(o, p) for step, o, p in run[0]["read"] if step == s]
            (b,) = [(o, p) for step, o, p in run[1]["read"] if step == s]
            assert (a[0], b[0]) == (0, 2)  # host 0 holds rows 0-1, host 1 rows 2-3
            assert set(a[1]).isdisjoint(b[1]) and a[1] + b[1] == whole[s]
    assert all(r["stopped"] for r in stopped) and not any(r["stopped"] for r in resumed)
    assert [step for step, _, _ in stopped[0]["read"]] == [0, 1]  # stopped inside step 1
    assert [step for step, _, _ in resumed[0]["read"]] == [1, 2, 3]  # no step again, none left
    meta = json.loads((tmp_path / "multi" / "sft" / "ckpt" / "3" / "meta" / "metadata").read_text())
    assert meta["next_step"] == 4 and meta["data"] == {"next_index": 4}
    lines = (tmp_path / "multi" / "sft" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [0, 1, 2, 3]  # process 0 alone writes
    want, got = np.load(tmp_path / "plain.npz"), np.load(tmp_path / "multi.npz")
    assert set(want.files) == set(got.files) and len(want.files) > 50
    for name in want.files:
        np.testing.assert_allclose(got[name], want[name], atol=1e-5, rtol=0, err_msg=name)
