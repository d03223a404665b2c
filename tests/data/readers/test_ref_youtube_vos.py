"""Ref-YouTube-VOS and (ReferFormer-converted) Ref-DAVIS17 readers: palette PNG annotations."""

import json

import numpy as np
import pytest

from jaxseg.data.readers import DataFormatError, read_ref_davis17, read_ref_youtube_vos
from jaxseg.data.readers.layouts import write_ytvos


def test_palette_annotations_decode_per_object(tmp_path, videos_single_target):
    write_ytvos(tmp_path, videos_single_target, split="train")
    index = read_ref_youtube_vos(tmp_path, "train")
    assert len(index) == 3
    rec = next(r for r in index if r.key == "vid_a/0")
    assert rec.target_ids == ("1",) and rec.extras["annotated"] == (0, 1, 2, 3)
    np.testing.assert_array_equal(rec.target_masks(), videos_single_target[0].objects[1])
    c = next(r for r in index if r.video_id == "vid_b")
    np.testing.assert_array_equal(c.target_masks(), videos_single_target[1].objects[3])


def test_frame_ids_come_from_frame_names(tmp_path, videos_single_target):
    write_ytvos(tmp_path, videos_single_target, split="train")
    path = tmp_path / "meta_expressions" / "train" / "meta_expressions.json"
    meta = json.loads(path.read_text())
    # YouTube-VOS keeps every 5th frame: rename frames 00000, 00005, 00010, 00015
    frames_dir = tmp_path / "train" / "JPEGImages" / "vid_b"
    anno_dir = tmp_path / "train" / "Annotations" / "vid_b"
    for t in reversed(range(4)):
        (frames_dir / f"{t:05d}.jpg").rename(frames_dir / f"{5 * t:05d}.jpg")
        (anno_dir / f"{t:05d}.png").rename(anno_dir / f"{5 * t:05d}.png")
    meta["videos"]["vid_b"]["frames"] = [f"{5 * t:05d}" for t in range(4)]
    path.write_text(json.dumps(meta))
    rec = next(r for r in read_ref_youtube_vos(tmp_path, "train") if r.video_id == "vid_b")
    assert rec.frame_ids == (0, 5, 10, 15)
    np.testing.assert_array_equal(rec.target_masks(), videos_single_target[1].objects[3])


def test_expression_naming_missing_object(tmp_path, videos_single_target):
    write_ytvos(tmp_path, videos_single_target, split="train")
    path = tmp_path / "meta_expressions" / "train" / "meta_expressions.json"
    meta = json.loads(path.read_text())
    meta["videos"]["vid_a"]["expressions"]["0"]["obj_id"] = "7"
    path.write_text(json.dumps(meta))
    with pytest.raises(DataFormatError) as err:
        read_ref_youtube_vos(tmp_path, "train")
    assert err.value.field == 'videos["vid_a"].expressions["0"].obj_id'
    assert "meta.json" in str(err.value)


def test_split_without_annotations_and_wrong_size_png(tmp_path, videos_single_target):
    write_ytvos(tmp_path, videos_single_target, split="valid")
    import shutil

    from PIL import Image

    shutil.rmtree(tmp_path / "valid" / "Annotations" / "vid_b")
    index = read_ref_youtube_vos(tmp_path, "valid")
    assert not next(r for r in index if r.video_id == "vid_b").has_masks
    Image.new("P", (5, 5)).save(tmp_path / "valid" / "Annotations" / "vid_a" / "00002.png")
    rec = next(r for r in index if r.video_id == "vid_a")
    with pytest.raises(DataFormatError, match=r"vid_a/00002\.png: annotation: size \[5, 5\]"):
        rec.target_masks()


def test_ref_davis17_annotator_from_expression_order(tmp_path, videos_single_target):
    write_ytvos(tmp_path, videos_single_target, split="valid")
    index = read_ref_davis17(tmp_path, "valid")
    assert [r.extras["annotator"] for r in index if r.video_id == "vid_a"] == [0, 1]
    assert all(r.dataset == "ref_davis17" for r in index)
