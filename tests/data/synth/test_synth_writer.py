"""The written benchmark is pure ReVOS layout and agrees with the generator exactly."""

from __future__ import annotations

import numpy as np
import pycocotools.mask as mask_utils
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from jaxseg.data.synth import evaluate, generate_video
from jaxseg.data.synth.writer import encode_rles, write_benchmark


def _decode(rle):
    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)


def _videos(loaded):
    for split in ("train", "valid"):
        for name, info in loaded["meta"][split].items():
            yield split, name, info, loaded["side"][split][name]


def test_layout_and_keys_are_revos(loaded):
    root = loaded["root"]
    assert {p.name for p in root.iterdir()} == {
        "JPEGImages",
        "mask_dict.json",
        "mask_dict_foreground.json",
        "meta_expressions_train_.json",
        "meta_expressions_valid_.json",
        "synth_scene_graph_train_.json",
        "synth_scene_graph_valid_.json",
    }
    vid_ids = []
    for _, name, info, _ in _videos(loaded):
        assert set(info) == {"vid_id", "height", "width", "frames", "expressions"}
        vid_ids.append(info["vid_id"])
        for exp in info["expressions"].values():
            assert set(exp) == {"exp", "obj_id", "anno_id", "type_id"}
            assert exp["type_id"] in (0, 1, 2)
        for frame in info["frames"]:
            with Image.open(root / "JPEGImages" / name / f"{frame}.jpg") as im:
                assert im.size == (info["width"], info["height"]) and im.mode == "RGB"
        fg = loaded["foreground"][name]
        assert set(fg) == {"masks_rle", "foreground_ratio"}
        assert len(fg["masks_rle"]) == len(info["frames"])
    assert len(set(vid_ids)) == len(vid_ids)
    train, valid = (set(loaded["meta"][s]) for s in ("train", "valid"))
    assert not train & valid


def test_masks_match_the_generator_and_graph(loaded, small_config):
    for split, name, info, side in _videos(loaded):
        index = int(name.split("_")[1])
        video = generate_video(3, split, index, small_config)
        H, W = info["height"], info["width"]
        assert len(side["anno_id"]) == video.masks.shape[0]
        for obj, aid in enumerate(side["anno_id"]):
            rles = loaded["mask_dict"][str(aid)]
            assert len(rles) == len(info["frames"])
            for t, rle in enumerate(rles):
                truth = video.masks[obj, t]
                if rle is None:
                    assert not truth.any()
                    continue
                assert rle["size"] == [H, W]
                np.testing.assert_array_equal(_decode(rle), truth)
                # the box of the RLE is the box of the mask
                ys, xs = np.nonzero(truth)
                box = [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
                np.testing.assert_array_equal(mask_utils.toBbox(rle), box)
                assert side["graph"]["objects"][obj]["visible_area"][t] == truth.sum()
        # visible masks never overlap: an occluded object loses exactly what is in front
        assert (video.masks.sum(axis=0) <= 1).all()
        fg = np.stack([_decode(r) for r in loaded["foreground"][name]["masks_rle"]])
        np.testing.assert_array_equal(fg, video.masks.any(axis=0))
        ratio = loaded["foreground"][name]["foreground_ratio"]
        np.testing.assert_allclose(ratio, fg.mean(axis=(1, 2)))


def test_hidden_objects_are_covered_by_their_occluder(loaded, small_config):
    seen = 0
    for split, name, _, side in _videos(loaded):
        graph = side["graph"]
        hides = [e for e in graph["events"] if e["type"] == "hide"]
        if not hides:
            continue
        video = generate_video(3, split, int(name.split("_")[1]), small_config)
        for e in hides:
            hidden, occluder = e["objects"]
            assert graph["objects"][occluder]["depth"] > graph["objects"][hidden]["depth"]
            for t in range(e["frame"], e["end"] + 1):
                full = graph["objects"][hidden]["full_area"][t]
                assert video.masks[hidden, t].sum() <= 0.25 * full
                assert not (video.masks[hidden, t] & video.masks[occluder, t]).any()
                seen += 1
    assert seen > 0, "the fixture should contain at least one occlusion"


def test_answers_rederive_from_the_scene_graph(loaded):
    kinds = set()
    for _, _, info, side in _videos(loaded):
        for exp_id, exp in info["expressions"].items():
            sc = side["expressions"][exp_id]
            kinds.add(sc["kind"])
            assert evaluate(sc["program"], side["graph"]) == exp["obj_id"]
            assert exp["anno_id"] == [side["anno_id"][k] for k in exp["obj_id"]]
            assert sc["null"] == (exp["type_id"] == 2) == (exp["obj_id"] == [])
            assert sc["multi"] == (len(exp["obj_id"]) > 1)
            area = np.array(sc["target_area"])
            assert sc["visible_frames"] == (area > 0).sum()
            if exp["obj_id"]:
                assert area[sc["keyframe"]] == area.max() > 0
                objects = side["graph"]["objects"]
                per_obj = [objects[k]["visible_area"] for k in exp["obj_id"]]
                np.testing.assert_array_equal(area, np.sum(per_obj, axis=0))
            if sc["program"]["op"] == "select":
                assert exp["type_id"] in (0, 2)
            else:
                assert exp["type_id"] in (1, 2)
        texts = [e["exp"] for e in info["expressions"].values()]
        assert len(set(texts)) == len(texts)
    assert {"referring", "reasoning", "null"} <= kinds


def test_null_queries_have_empty_masks(loaded):
    n = 0
    for _, _, info, side in _videos(loaded):
        for exp_id, exp in info["expressions"].items():
            if exp["type_id"] != 2:
                continue
            n += 1
            assert exp["anno_id"] == [] and exp["obj_id"] == []
            assert side["expressions"][exp_id]["keyframe"] is None
            assert not any(side["expressions"][exp_id]["target_area"])
    assert n > 0


def test_refuses_to_overwrite_without_flag(small_benchmark, tmp_path, small_config):
    out, _ = small_benchmark
    with pytest.raises(FileExistsError, match="not empty"):
        write_benchmark(out, {"train": 1}, seed=0, cfg=small_config, progress=False)
    (tmp_path / "precious.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not a synthetic benchmark"):
        write_benchmark(
            tmp_path, {"train": 1}, seed=0, cfg=small_config, progress=False, overwrite=True
        )
    assert (tmp_path / "precious.txt").exists()


@settings(max_examples=25, deadline=None)
@given(arrays(np.bool_, st.tuples(st.integers(1, 4), st.integers(1, 9), st.integers(1, 9))))
def test_rle_round_trip(masks):
    for t, rle in enumerate(encode_rles(masks)):
        if rle is None:
            assert not masks[t].any()
        else:
            np.testing.assert_array_equal(_decode(rle), masks[t])
