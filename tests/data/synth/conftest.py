"""A small synthetic benchmark written once per test session."""

from __future__ import annotations

import json

import pytest

from jaxseg.data.synth import SynthConfig, write_benchmark

SMALL = SynthConfig(size=64, frames=(10, 12), objects=(2, 5), queries_per_video=6)


@pytest.fixture(scope="session")
def small_config():
    return SMALL


@pytest.fixture(scope="session")
def small_benchmark(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    summary = write_benchmark(out, {"train": 6, "valid": 4}, seed=3, cfg=SMALL, progress=False)
    return out, summary


@pytest.fixture(scope="session")
def loaded(small_benchmark):
    out, _ = small_benchmark
    return {
        "root": out,
        "mask_dict": json.loads((out / "mask_dict.json").read_text()),
        "foreground": json.loads((out / "mask_dict_foreground.json").read_text()),
        "meta": {
            s: json.loads((out / f"meta_expressions_{s}_.json").read_text())["videos"]
            for s in ("train", "valid")
        },
        "side": {
            s: json.loads((out / f"synth_scene_graph_{s}_.json").read_text())["videos"]
            for s in ("train", "valid")
        },
    }
