"""The whole pipeline in miniature (CI keeps it from rotting): demo --quick, report, export
parity with transformers, and resume after a SIGKILL continuing exactly."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxseg.train.checkpoint import Checkpointer

jax.config.update("jax_default_matmul_precision", "highest")


@pytest.fixture(scope="module")
def quick_run(quick_demo_run):
    return quick_demo_run


def test_report_has_every_stage(quick_run):
    report = (quick_run / "run" / "report.md").read_text()
    for row in ("| untrained |", "| SFT |", "| SFT+GRPO |"):
        assert row in report
    assert (quick_run / "run" / "curves.png").is_file()
    grpo = [
        json.loads(x)
        for x in (quick_run / "run" / "grpo" / "metrics.jsonl").read_text().splitlines()
    ]
    assert grpo and all(np.isfinite(r["loss"]) for r in grpo)
    summary = json.loads((quick_run / "run" / "eval" / "grpo" / "summary.json").read_text())
    assert summary["overall"]["count"] > 0


def test_export_matches_transformers(quick_run, tmp_path):
    import torch
    import transformers

    from jaxseg import cli
    from jaxseg.models.family import family_of
    from jaxseg.sampling import Prompt, Sampler
    from jaxseg.sampling.filters import SamplingParams
    from jaxseg.train.trainer import Experiment

    out = tmp_path / "hf"
    assert cli.main(["export", "--checkpoint", str(quick_run / "run"), "--out", str(out)]) == 0
    exp = Experiment.from_workdir(quick_run / "run", progress=False)
    assert exp.load_latest() == "grpo"
    example = exp.sft_examples("train", 1)[0]
    ids = example["input_ids"][None]
    pixels = np.asarray(example["pixel_values"], np.float32)
    ours = np.asarray(exp.model(ids, pixel_values=pixels, image_grid_thw=example["image_grid_thw"]))
    from jaxseg.models.qwen2_5_vl import mm_token_type_ids_from_input_ids

    cfg = exp.model.config
    types = mm_token_type_ids_from_input_ids(ids, cfg.image_token_id, cfg.video_token_id)
    # the exported family's transformers class (config.json "architectures")
    arch = json.loads((out / "config.json").read_text())["architectures"][0]
    assert arch == family_of(cfg).architecture
    hf = getattr(transformers, arch).from_pretrained(out, attn_implementation="eager").eval()
    with torch.no_grad():  # mm_token_type_ids as the HF processor returns them
        theirs = hf(
            input_ids=torch.as_tensor(ids),
            mm_token_type_ids=torch.as_tensor(types),
            pixel_values=torch.as_tensor(pixels),
            image_grid_thw=torch.as_tensor(example["image_grid_thw"]),
        ).logits.numpy()
    np.testing.assert_allclose(ours, theirs, atol=2e-4, rtol=1e-4)

    # greedy generation of the exported model in transformers == our sampler's, from the
    # prompt (the conversation up to the first assistant turn)
    first = int(np.argmax(example["policy_mask"] > 0))
    prompt = Prompt(ids[0, :first].tolist(), pixels, example["image_grid_thw"])
    greedy = SamplingParams(temperature=0.0)
    new = 12
    rollout = Sampler(exp.model, eos_token_ids=[], pad_token_id=exp.ids["pad_token_id"]).generate(
        [prompt], max_new_tokens=new, sampling=greedy
    )
    prompt_ids = torch.as_tensor(ids[:, :first])
    with torch.no_grad():
        hf_tokens = hf.generate(
            input_ids=prompt_ids,
            attention_mask=torch.ones_like(prompt_ids),
            mm_token_type_ids=torch.as_tensor(types[:, :first]),
            pixel_values=torch.as_tensor(pixels),
            image_grid_thw=torch.as_tensor(example["image_grid_thw"]),
            max_new_tokens=new,
            min_new_tokens=new,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=exp.ids["pad_token_id"],
        )[:, first:]
    np.testing.assert_array_equal(rollout.tokens, hf_tokens.numpy())
    assert (out / "tokenizer.json").is_file() and (out / "chat_template.jinja").is_file()


def _train_cmd(workdir: Path, data_root: Path) -> list[str]:
    cmd = [sys.executable, "-m", "jaxseg.cli", "train", "--config", "demo:quick"]
    cmd += ["--workdir", str(workdir), "--stages", "data,sft", "--no-progress"]
    for o in [
        f"data.root={data_root}",
        "sft.steps=4",
        "sft.num_examples=8",
        "sft.checkpoint_every=1",
    ]:
        cmd += ["--set", o]
    return cmd


def test_resume_after_kill_continues_exactly(tmp_path):
    data = tmp_path / "data"
    env = dict(os.environ, XLA_FLAGS="")
    subprocess.run(_train_cmd(tmp_path / "full", data), check=True, env=env, capture_output=True)
    proc = subprocess.Popen(
        _train_cmd(tmp_path / "cut", data),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    metrics = tmp_path / "cut" / "sft" / "metrics.jsonl"
    deadline = time.time() + 300
    while (
        time.time() < deadline
    ):  # kill right after step 1 was logged (its checkpoint may be mid-write)
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    subprocess.run(_train_cmd(tmp_path / "cut", data), check=True, env=env, capture_output=True)

    from jaxseg.train.learner import ITEMS

    def final(workdir):
        with Checkpointer(workdir / "sft" / "ckpt", item_names=ITEMS) as ckpt:
            assert ckpt.latest_step() == 3
            step_dir = ckpt.directory / "3" / "params"
            import orbax.checkpoint as ocp

            return ocp.StandardCheckpointer().restore(step_dir)

    a, b = final(tmp_path / "full"), final(tmp_path / "cut")
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    losses = lambda d: {  # noqa: E731
        json.loads(x)["step"]: json.loads(x)["loss"]
        for x in (d / "sft" / "metrics.jsonl").read_text().splitlines()
    }
    assert losses(tmp_path / "full") == losses(tmp_path / "cut")
