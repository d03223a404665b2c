"""`jaxseg bench` (listing, `all`'s settings name real scripts) and `bench/device_smoke.sh`
(its commands, the GPU-sharing environment, its GRPO config)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jaxseg.commands import bench
from jaxseg.config import load_config

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "bench" / "device_smoke.sh"


def test_quick_settings_name_existing_benchmarks_and_fit_ten_minutes():
    names = set(bench.available())
    assert set(bench.QUICK) <= names, set(bench.QUICK) - names
    limits = [bench.QUICK.get(n, ([], 60))[1] for n in names]
    assert sum(limits) <= 600  # every limit reached still ends `bench all` within 10 minutes


def test_listing_offers_all(capsys):
    import argparse

    assert bench.run(argparse.Namespace(name=None, args=[])) == 0
    out = capsys.readouterr().out
    assert "all " in out and "grpo_step" in out and "group_kv" in out


def _dry(**env):
    out = subprocess.run(
        ["bash", str(SMOKE), "--dry-run"],
        capture_output=True, text=True, check=True, cwd=ROOT,
        env={**os.environ, **env},
    )  # fmt: skip
    return out.stdout


def test_device_smoke_runs_every_step_with_jax_not_preallocating():
    out = _dry()
    assert "XLA_PYTHON_CLIENT_PREALLOCATE=false" in out
    for name in ("install", "devices", "forward", "rollout", "grpo", "sharded"):
        assert f"[{name}]" in out, name
    assert "device_smoke_config.py:device=cuda,steps=20" in out
    assert "jax[cuda12]==0.10.2" in out and "--no-deps sam2==1.1.0" in out
    cpu = _dry(SMOKE_DEVICE="cpu", SMOKE_ONLY="grpo sharded")
    assert "[install]" not in cpu and "[forward]" not in cpu
    assert "device=cpu" in cpu and "[sharded]" in cpu


def test_device_smoke_config_is_grpo_with_the_sam2_sidecar_on_the_device():
    c = load_config(str(ROOT / "bench" / "device_smoke_config.py") + ":device=cpu,steps=3")
    assert c.segmenter.backend == "sam2"
    assert c.segmenter.config["device"] == "cpu" and c.segmenter.config["model"] == "tiny"
    assert c.grpo.steps == 3 and not c.grpo.require_sft and c.grpo.overlap_chunks == 2


@pytest.mark.slow
def test_device_smoke_cpu_subset_passes(tmp_path):
    """The parts that run on a CPU: the GRPO run with the tiny SAM2 sidecar and the mesh
    check (the benches are `jaxseg bench`'s)."""
    env = dict(
        SMOKE_DEVICE="cpu", SMOKE_INSTALL="0", SMOKE_STEPS="2", SMOKE_OUT=str(tmp_path),
        SMOKE_ONLY="devices grpo sharded",
    )  # fmt: skip
    run = subprocess.run(
        ["bash", str(SMOKE)], capture_output=True, text=True, cwd=ROOT,
        env={**os.environ, **env}, timeout=900,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:]
    summary = (tmp_path / "summary.txt").read_text()
    assert summary.count(" ok ") == 3, summary


def test_probe_answer_names_each_digit_by_coordinate_and_place(monkeypatch):
    from transformers import AutoTokenizer

    from jaxseg.models.family import shipped_base

    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    from probe_answer import answer_digits

    tok = AutoTokenizer.from_pretrained(shipped_base())
    ids = np.array([0] + tok.encode("[[23, 5, 107, 89]]", add_special_tokens=False))
    mask = np.ones(len(ids) - 1)
    got = [(k, d) for _, k, d in answer_digits(tok, ids, mask)]
    assert got == [(0, 0), (0, 1), (1, 0), (2, 0), (2, 1), (2, 2), (3, 0), (3, 1)]
    positions = [p for p, _, _ in answer_digits(tok, ids, mask)]
    assert [tok.decode([int(ids[p + 1])]) for p in positions] == list("23510789")
    mask[:2] = 0  # positions outside the answer (here the one predicting "2") are not read
    assert [p for p, _, _ in answer_digits(tok, ids, mask)] == positions[1:]


def test_probe_trace_sorts_a_traces_tokens_into_query_copy_digits_and_the_rest(monkeypatch):
    from transformers import AutoTokenizer

    from jaxseg.models.family import shipped_base

    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    from probe_trace import regions

    tok = AutoTokenizer.from_pretrained(shipped_base())
    query = "the shape that the diamond collides with"
    trace = (
        f'<think>The query asks for "{query}", which is the small shape; so that is the '
        "keyframe.</think>"
        '<answer>{"keyframe_timestamp": 3, "bbox_2d_list": [[12, 40, 30, 58]]}</answer>'
    )
    pieces = [tok.decode([i]) for i in tok.encode(trace, add_special_tokens=False)]
    assert "".join(pieces) == trace
    where = regions(pieces, query)
    by = {r: "".join(p for p, w in zip(pieces, where, strict=True) if w == r) for r in set(where)}
    # "the", "shape", "that" are written elsewhere in the trace: template, not copied content
    assert by["query words"].split() == ["diamond", "collides", "with"]
    assert by["query"].split() == ["the", "shape", "that", "the"]
    assert by["digits"] == "1240305" + "8"  # the box's digits, not the keyframe's 3
    assert "3" in by["rest"] and "which is the small shape" in by["rest"]
    # a trace that never restates the query has no query region
    assert set(regions(pieces[-10:], query)) <= {"digits", "rest"}


@pytest.mark.slow
def test_probe_tower_trains_a_tower_and_reports_each_attribute():
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "probe_tower.py"),
            "--steps",
            "2",
            "--eval-every",
            "2",
            "--train-frames",
            "40",
            "--test-frames",
            "40",
            "--vision",
            '{"patch_size": 8, "spatial_merge_size": 4}',
        ],
        capture_output=True,
        text=True,
        cwd=ROOT / "bench",
        check=True,
    ).stdout
    assert "patch 8, merge 4" in out
    assert [line.split(":")[0].split("(")[0].strip() for line in out.splitlines()[1:]] == [
        "step     0",
        "step     2",
    ]
    assert all(f"{name} " in out.splitlines()[-1] for name in ("colour", "shape", "size"))


def test_probe_layout_adds_one_difference_at_a_time(monkeypatch):
    from jaxseg.train import base_tasks

    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    from probe_layout import _box_prompt, layouts

    item = base_tasks.eval_items(7, "base_heldout", 1, "frames")[0]
    k, image = item.frames[item.frame_position]
    box = _box_prompt(base_tasks, item)
    assert box.startswith('Query: "the ') and "in the 112x112 image" in box
    shown = {}
    for name, conv in layouts(item, box):
        (msg,) = conv
        parts = msg["content"]
        shown[name] = [p["text"] if p["type"] == "text" else "<img>" for p in parts]
        images = [p["image"] for p in parts if p["type"] == "image"]
        assert any(x is image for x in images), name  # the asked frame is always shown
    assert shown["box"] == ["<img>", box]
    assert shown["label+box"] == [f"Frame {k}: ", "<img>", box]
    assert shown["frames/1"] == [f"Frame {k}: ", "<img>", item.prompt]
    assert len(shown["frames/2"]) == 5 and f"Frame {k}: " in shown["frames/2"]
    assert len(shown["frames"]) == 2 * len(item.frames) + 1


def test_probe_layout_any_object_is_the_best_overlap_among_the_frames_shown(monkeypatch):
    from jaxseg.train import base_tasks

    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    from probe_layout import _box_prompt, any_object_iou, layouts

    def answer(box):
        return "[[" + ", ".join(str(int(v)) for v in box) + "]]"

    checked = 0
    for item in base_tasks.eval_items(7, "base_heldout", 8, "frames"):
        convs = dict(layouts(item, _box_prompt(base_tasks, item)))
        asked = item.frame_objects[item.frame_position][0]
        assert any_object_iou(answer(asked[0]), item, convs["box"]) == 1.0
        assert any_object_iou("no target", item, convs["frames"]) == 0.0
        for j, (boxes, _) in enumerate(item.frame_objects):
            for box in boxes:  # an object seen only in another frame counts where it is shown
                if j != item.frame_position and not (asked == box).all(-1).any():
                    assert any_object_iou(answer(box), item, convs["frames"]) == 1.0
                    assert any_object_iou(answer(box), item, convs["box"]) < 1.0
                    checked += 1
    assert checked > 0
