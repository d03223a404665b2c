"""`jaxseg view RUN`: one self-contained HTML page per run, checked as text and in a real
headless chromium (screenshot + the DOM after the page's script counted decoded pictures).

The run is built without a model: the synthetic benchmark's held-out split evaluated with the
o3 protocol's random policy (stage "init") and oracle policy (stage "grpo"), classical mask
backend, through the trainer's own evaluate_policy, so traces, predictions and summaries have
the layout `jaxseg train` writes."""

import html
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from jaxseg import cli
from jaxseg.data.synth import SynthConfig
from jaxseg.data.synth.writer import write_benchmark
from jaxseg.protocols.registry import make_protocol
from jaxseg.protocols.scripted import OraclePolicy, RandomPolicy
from jaxseg.segmenter import make_backend
from jaxseg.train.evaluate import evaluate_policy
from jaxseg.train.samples import SampleSource
from jaxseg.viz.viewer import build_page, write_page

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


def browser() -> str | None:
    return next((p for p in map(shutil.which, BROWSERS) if p), None)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("view")
    data, run_dir = root / "data", root / "run"
    write_benchmark(data, {"valid": 2}, 3, SynthConfig.preset("easy"), progress=False)
    source = SampleSource(data, "valid")
    positions = list(range(min(4, len(source))))
    protocol = make_protocol("o3")
    policies = {
        "init": RandomPolicy(protocol, 0),
        "grpo": OraclePolicy(protocol, [source[i] for i in positions]),
    }
    backend = make_backend("classical")
    for tag, policy in policies.items():
        out = run_dir / "eval" / tag
        summary, episodes = evaluate_policy(
            protocol, policy, source, backend=backend, out_dir=out, positions=positions,
            progress=False,
        )  # fmt: skip
        (out / "summary.json").write_text(json.dumps(summary))
        with (out / "traces.jsonl").open("w") as f:
            for ep in episodes:
                f.write(json.dumps(ep.trace.to_json()) + "\n")
    config = {
        "data": {"root": str(data), "format": "revos", "eval_split": "valid"},
        "protocol": {"name": "o3"},
        "model": {"size": "scripted"},
        "segmenter": {"backend": "classical"},
        "seed": 0,
    }
    (run_dir / "config.json").write_text(json.dumps(config))
    return run_dir


def traces(run_dir, tag):
    lines = (run_dir / "eval" / tag / "traces.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_page_holds_every_turn_frame_answer_and_reward_term(run, tmp_path):
    path = write_page(run, tmp_path / "view.html")
    page = path.read_text()
    # self-contained: every picture inline, no external script, style sheet or link
    assert not re.search(r'(src|href)="(https?:|file:|//)', page)
    assert "<link" not in page
    srcs = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    videos = re.findall(r'<video [^>]*poster="([^"]+)" src="([^"]+)"', page)
    episodes = traces(run, "init") + traces(run, "grpo")
    assert page.count('<section class="episode"') == len(episodes)
    shown = sum(len(t["frames_shown"]) for e in episodes for t in e["turns"])
    stills = sum(e["final"]["keyframe"] is not None for e in episodes)  # the answer's keyframe
    assert sum(s.startswith("data:image/png") for s in srcs) == shown + stills
    assert len(videos) == len(episodes)  # the masks over the video, one per episode
    for poster, src in videos:
        assert poster.startswith("data:image/png;base64,")
        assert src.startswith("data:video/webm;base64,")
    for e in episodes:
        assert html.escape(e["query"]) in page
        for term in e["reward"]:
            assert f"<th>{term}</th>" in page
        for t in e["turns"]:
            if t["response"].strip():
                assert html.escape(t["response"]) in page
    oracle = traces(run, "grpo")[0]["final"]
    assert f"keyframe {oracle['keyframe']}" in page


def test_view_command_and_clear_errors(run, tmp_path, capsys):
    out = tmp_path / "page.html"
    assert cli.main(["view", str(run), "--out", str(out), "--stage", "grpo"]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert "SFT+GRPO" in out.read_text() and "untrained" not in out.read_text()
    with pytest.raises(SystemExit, match="no config.json"):
        cli.main(["view", str(tmp_path / "nothing")])
    with pytest.raises(SystemExit, match="evaluated: \\['init', 'grpo'\\]"):
        cli.main(["view", str(run), "--stage", "sft"])
    # without the benchmark the page still has the text, and says what is missing
    page = build_page(run, data_root=tmp_path / "elsewhere")
    assert "was not found" in page and "<img" not in page


def chromium(url, *args, tmp_path, timeout=180):
    exe = browser()
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    cmd += [f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", *args, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True)


@pytest.mark.skipif(
    browser() is None and not os.environ.get("CI"),
    reason="no chromium on this machine (CI installs Debian's chromium in .ci/run; "
    "locally: apt-get install -y chromium)",
)
def test_page_renders_the_frames_in_headless_chromium(run, tmp_path):
    assert browser() is not None, "CI must have chromium: .ci/run installs it"
    page = write_page(run, tmp_path / "view.html", stages=["grpo"])
    url = page.resolve().as_uri()
    dom = chromium(url, "--dump-dom", tmp_path=tmp_path).stdout
    loaded = re.search(
        r'data-images-loaded="(\d+)" data-images-total="(\d+)" '
        r'data-videos-ready="(\d+)" data-videos-total="(\d+)"',
        dom,
    )
    assert loaded, dom[:500]
    assert int(loaded[1]) == int(loaded[2]) == page.read_text().count("<img ") > 0
    assert int(loaded[3]) == int(loaded[4]) == len(traces(run, "grpo"))  # the WebMs decode

    # the screenshot shows the frames: the target's own colour (from the benchmark's frame)
    # covers many pixels; on the same page without its pictures it covers none
    first = traces(run, "grpo")[0]
    source = SampleSource(json.loads((run / "config.json").read_text())["data"]["root"], "valid")
    record = next(source.record(i) for i in range(len(source)) if source.record(i).key == first["sample_key"])  # fmt: skip
    frame = np.asarray(Image.open(record.frame_paths[0]).convert("RGB"), np.float32)
    colour = frame[record.target_masks([0])[0]].mean(axis=0)

    def target_pixels(html_path):
        shot = tmp_path / f"{html_path.stem}.png"
        chromium(html_path.resolve().as_uri(), "--window-size=1280,1600",
                 f"--screenshot={shot}", tmp_path=tmp_path)  # fmt: skip
        image = np.asarray(Image.open(shot).convert("RGB"), np.float32)
        assert image.shape[:2] == (1600, 1280) and image.std() > 10  # something was drawn
        return int((np.sqrt(((image - colour) ** 2).sum(-1)) < 24).sum())

    blank = tmp_path / "blank.html"
    blank.write_text(re.sub(r'(src|poster)="data:[^"]+"', r'\1=""', page.read_text()))
    assert target_pixels(page) > 300
    assert target_pixels(blank) == 0


def test_view_a_trained_run(quick_demo_run, tmp_path):
    """The page of a real (quick) demo run: every evaluated stage, every episode, its
    frames and masks found through the run's own config."""
    run_dir = quick_demo_run / "run"
    out = tmp_path / "demo.html"
    assert cli.main(["view", str(run_dir), "--out", str(out)]) == 0
    page = out.read_text()
    stages = [p.parent.name for p in (run_dir / "eval").glob("*/traces.jsonl")]
    assert set(stages) >= {"init", "sft", "grpo"}
    episodes = sum(len(traces(run_dir, s)) for s in stages)
    assert page.count('<section class="episode"') == episodes
    assert page.count("<video ") == episodes and "was not found" not in page
