"""A wheel built from HEAD carries the configs, and the built-in names resolve from it alone
(installed into a plain folder, no checkout on the path)."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

CHECK = """
import json, sys
from importlib import resources
from pathlib import Path
import jaxseg
from jaxseg.config import CONFIGS_DIR, load_config

target = Path(sys.argv[1]).resolve()
assert Path(jaxseg.__file__).resolve().is_relative_to(target), jaxseg.__file__
assert CONFIGS_DIR.resolve().is_relative_to(target), CONFIGS_DIR
assert load_config("demo").protocol.name
assert load_config("synthetic_tiny", ["grpo.steps=3"]).grpo.steps == 3
assert load_config("o3_seg").protocol.name == "o3"
assert load_config("qwen2_5_vl_3b_grpo:protocol=rcot").protocol.name == "rcot"
hf = resources.files("jaxseg") / "configs" / "hf" / "qwen2_5_vl_3b_instruct" / "config.json"
assert json.loads(hf.read_text())["model_type"] == "qwen2_5_vl"
print("ok", CONFIGS_DIR)
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    if not (REPO / ".git").exists() or shutil.which("git") is None:
        pytest.skip("needs a git checkout (the wheel is built from HEAD)")
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    src.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", "HEAD"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    out = root / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
        + ["-w", str(out), str(src)],
        check=True,
        cwd=root,
    )
    (path,) = out.glob("jaxseg-*.whl")
    return path


def test_wheel_contains_the_configs(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in (
        "jaxseg/configs/synthetic_tiny.py",
        "jaxseg/configs/o3_seg.py",
        "jaxseg/configs/qwen2_5_vl_3b_grpo.py",
        "jaxseg/configs/hf/README.md",
        "jaxseg/configs/hf/qwen2_5_vl_3b_instruct/config.json",
        "jaxseg/configs/hf/qwen2_5_vl_7b_instruct/config.json",
    ):
        assert name in names, f"{name} missing from {wheel.name}"


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """The wheel installed into a plain folder (no venv, no dependencies)."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target)]
        + [str(wheel)],
        check=True,
    )
    return target


def run_from(target: Path, code: str, cwd: Path) -> subprocess.CompletedProcess:
    """`code` in a fresh interpreter that sees only the wheel's jaxseg (and the venv's
    dependencies), started away from the checkout."""
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin", "HOME": str(cwd)}
    return subprocess.run(
        [sys.executable, "-P", "-c", code, str(target)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )


def test_config_names_resolve_from_the_installed_wheel(installed, tmp_path):
    assert not (installed / "jaxseg" / "configs").is_symlink()  # real files, not the checkout
    done = run_from(installed, CHECK, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("ok ")


def test_plan_with_the_3b_config_from_the_installed_wheel(installed, tmp_path):
    code = (
        "import sys; from jaxseg import cli; "
        "sys.exit(cli.main(['plan', '--config', 'qwen2_5_vl_3b_grpo:remat=full', "
        "'--topology', 'v5p-32']))"
    )
    done = run_from(installed, code, tmp_path)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "3,754,622,976" in done.stdout  # the 3B's parameters, from configs/hf in the wheel
    assert "-> fits" in done.stdout


def test_saved_processor_loads_with_autoprocessor_without_torchvision(tmp_path):
    """What an exported folder needs: transformers' AutoProcessor builds a working processor
    from it in this install (no torchvision), given trust_remote_code for an image-only
    class the folder ships."""
    import importlib.util

    from transformers import AutoProcessor

    from jaxseg.data.tokenizer import build_processor, build_tokenizer, save_processor

    if importlib.util.find_spec("torchvision") is not None:
        pytest.skip("torchvision is installed: the case is loading without it")
    path = save_processor(build_processor(build_tokenizer()), tmp_path / "processor")
    processor = AutoProcessor.from_pretrained(path, trust_remote_code=True)
    assert processor.image_processor is not None


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_remote_code_makes_a_saved_processor_load_with_autoprocessor(tmp_path, family):
    """jaxseg.data.hf_processing's add_remote_code on a saved processor folder (save_processor
    calls it; applied again here it is idempotent); AutoProcessor (trust_remote_code) then
    builds a processor without torchvision that expands an image into its pad tokens."""
    import importlib.util

    import numpy as np
    from PIL import Image
    from transformers import AutoProcessor

    from jaxseg.data.hf_processing import add_remote_code
    from jaxseg.data.tokenizer import build_processor, build_tokenizer, save_processor

    if importlib.util.find_spec("torchvision") is not None:
        pytest.skip("torchvision is installed: the case is loading without it")
    processor = build_processor(build_tokenizer(), family=family)
    path = save_processor(processor, tmp_path / "processor")
    add_remote_code(path)
    processor = AutoProcessor.from_pretrained(path, trust_remote_code=True)
    name = {"qwen2_5_vl": "Qwen2_5_VLProcessor", "qwen3_vl": "Qwen3VLProcessor"}[family]
    assert type(processor).__name__ == f"ImageOnly{name}"
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True)
    image = Image.fromarray(np.zeros((112, 112, 3), np.uint8))
    out = processor(text=[text], images=[image], return_tensors="np")
    t, h, w = out["image_grid_thw"][0]
    pads = int((out["input_ids"][0] == processor.image_token_id).sum())
    merge = processor.image_processor.merge_size
    assert pads == t * h * w // merge**2 and out["pixel_values"].shape[0] == t * h * w
    # without trust_remote_code transformers keeps its own (torchvision) class
    with pytest.raises(ImportError, match="[Tt]orchvision"):
        AutoProcessor.from_pretrained(path)


def test_an_export_ships_the_processor_module_its_config_names(tmp_path):
    """A reference folder whose processor config names jaxseg's image-only class but lacks
    the module (e.g. a run folder committed without it): the exported folder has it and
    AutoProcessor loads it."""
    import importlib.util

    from transformers import AutoProcessor

    from jaxseg.data.hf_processing import REMOTE_MODULE
    from jaxseg.data.tokenizer import build_processor, build_tokenizer, save_processor
    from jaxseg.models.hf_weights import _ship_processor_code

    ref = save_processor(build_processor(build_tokenizer(), family="qwen3_vl"), tmp_path / "ref")
    (ref / f"{REMOTE_MODULE}.py").unlink()
    out = tmp_path / "out"
    out.mkdir()
    for f in ref.iterdir():
        (out / f.name).write_bytes(f.read_bytes())
    _ship_processor_code(out)
    assert (out / f"{REMOTE_MODULE}.py").is_file()
    if importlib.util.find_spec("torchvision") is None:
        processor = AutoProcessor.from_pretrained(out, trust_remote_code=True)
        assert type(processor).__name__ == "ImageOnlyQwen3VLProcessor"
    plain = tmp_path / "plain"  # a folder without the auto_map entry is left alone
    plain.mkdir()
    (plain / "processor_config.json").write_text('{"processor_class": "Qwen3VLProcessor"}')
    _ship_processor_code(plain)
    assert not (plain / f"{REMOTE_MODULE}.py").exists()
