"""notebooks/evaluate.ipynb executes (nbclient) against the artifacts of a very short demo run
and shows the learning table, the curves, the overlays, the per-subset tables and traces."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "evaluate.ipynb"


@pytest.fixture(scope="module")
def quick_run(quick_demo_run):
    return quick_demo_run / "run"


def execute(monkeypatch, run: Path) -> nbformat.NotebookNode:
    monkeypatch.setenv("JAXSEG_RUN", str(run))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": NOTEBOOK.parent}}
    )
    client.execute()
    return nb


def outputs(nb, kind: str) -> list[str]:
    found = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if kind == "stream" and out.output_type == "stream":
                found.append(out.text)
            elif kind in out.get("data", {}):
                found.append(out.data[kind])
    return found


def test_notebook_shows_the_run(quick_run, monkeypatch):
    before = sorted(p for p in quick_run.rglob("*"))
    nb = execute(monkeypatch, quick_run)
    assert sorted(p for p in quick_run.rglob("*")) == before  # reads the run, writes nothing
    markdown = "\n".join(outputs(nb, "text/markdown"))
    for row in ("| untrained |", "| SFT |", "| SFT+GRPO |"):
        assert row in markdown
    text = "".join(outputs(nb, "stream"))
    assert f"run: {quick_run.resolve()}" in text
    for tag in ("[untrained]", "[SFT]", "[SFT+GRPO]"):
        assert tag in text  # per-subset tables
    assert "referring" in text and "overall" in text
    # curves + one overlay page per evaluated stage
    assert len(outputs(nb, "image/png")) == 1 + 3
    first = json.loads((quick_run / "eval" / "grpo" / "traces.jsonl").read_text().splitlines()[0])
    assert first["sample_key"] in markdown  # the traces section
    assert "| step | reward/mean" in markdown  # GRPO steps table
    videos = [h for h in outputs(nb, "text/html") if "data:image/gif;base64," in h]
    assert len(videos) == 1  # one episode inline as a captioned GT | prediction GIF


def test_missing_run_is_named(tmp_path, monkeypatch):
    with pytest.raises(CellExecutionError, match="no config.json"):
        execute(monkeypatch, tmp_path / "no_run_here")


def test_readme_notebook_command_runs_verbatim(quick_run, tmp_path):
    """The README's command, word for word, in a copy of the checkout's layout whose
    runs/demo is the quick run: it executes the notebook and writes the HTML page."""
    readme = (REPO / "README.md").read_text()
    (command,) = re.findall(r"`(JAXSEG_RUN=\S+ jupyter nbconvert [^`]*)`", readme)
    shutil.copytree(NOTEBOOK.parent, tmp_path / "notebooks")
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "demo").symlink_to(quick_run, target_is_directory=True)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    done = subprocess.run(
        ["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    html = (tmp_path / "notebooks" / "evaluate.html").read_text()
    assert f"run: {quick_run.resolve()}" in html
    assert "| untrained |" in html or "<td>untrained</td>" in html
    assert "data:image/gif;base64," in html  # the inline episode video survives nbconvert
