"""ReVOS reader on a fixture written in the VISA layout, including every kind of bad input."""

import json
import warnings

import numpy as np
import pytest

from jaxseg.data.readers import DataFormatError, read_revos
from jaxseg.data.readers.errors import BadInputWarning
from jaxseg.data.readers.layouts import write_revos


def test_reads_every_expression_with_masks_and_flags(tmp_path, videos):
    write_revos(tmp_path, videos, split="valid")
    index = read_revos(tmp_path, "valid")
    assert len(index) == 5 and not index.skipped
    by_key = {r.key: r for r in index}
    a = videos[0]
    ref = by_key["vid_a/0"]
    assert ref.num_frames == 4 and ref.frame_ids == (0, 1, 2, 3)
    assert (ref.height, ref.width) == (24, 32)
    assert ref.type_id == 0 and not ref.is_null and not ref.is_multi_object
    np.testing.assert_array_equal(ref.target_masks(), a.objects[1])
    assert by_key["vid_a/1"].type_id == 1
    both = by_key["vid_a/2"]
    assert both.is_multi_object
    np.testing.assert_array_equal(both.target_masks(), a.objects[1] | a.objects[2])
    assert both.object_masks().shape == (2, 4, 24, 32)
    null = by_key["vid_a/3"]
    assert null.is_null and not null.target_masks().any()
    np.testing.assert_array_equal(null.foreground_masks(), a.objects[1] | a.objects[2])
    # lazy decode of a subset of frames, and target areas for keyframe sampling
    np.testing.assert_array_equal(ref.target_masks([3, 0]), a.objects[1][[3, 0]])
    np.testing.assert_array_equal(ref.target_areas(), a.objects[1].sum(axis=(1, 2)))
    np.testing.assert_array_equal(both.target_areas(), (a.objects[1] | a.objects[2]).sum((1, 2)))
    frames = ref.load_frames([1])
    assert frames.shape == (1, 24, 32, 3) and frames.dtype == np.uint8


def test_foreground_falls_back_to_union_of_named_annotations(tmp_path, videos):
    write_revos(tmp_path, videos, split=None)
    (tmp_path / "mask_dict_foreground.json").unlink()
    index = read_revos(tmp_path, None)
    rec = next(r for r in index if r.key == "vid_a/0")
    np.testing.assert_array_equal(
        rec.foreground_masks(), videos[0].objects[1] | videos[0].objects[2]
    )


def _meta(tmp_path):
    path = tmp_path / "meta_expressions_valid_.json"
    return path, json.loads(path.read_text())


def test_missing_frame_names_the_file(tmp_path, videos):
    write_revos(tmp_path, videos)
    (tmp_path / "JPEGImages" / "vid_b" / "00002.jpg").unlink()
    with pytest.raises(DataFormatError, match=r"vid_b/00002\.jpg.*missing"):
        read_revos(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        index = read_revos(tmp_path, skip_bad=True)
    assert len(index.skipped) == 1 and len(index) == 4
    assert sum(issubclass(w.category, BadInputWarning) for w in caught) == 1


def test_corrupt_frame_names_the_file(tmp_path, videos):
    write_revos(tmp_path, videos)
    (tmp_path / "JPEGImages" / "vid_a" / "00001.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(DataFormatError, match=r"vid_a/00001\.jpg.*not a readable image"):
        read_revos(tmp_path)


def test_rle_size_disagreeing_with_frame(tmp_path, videos):
    write_revos(tmp_path, videos)
    path = tmp_path / "mask_dict.json"
    masks = json.loads(path.read_text())
    masks["1"][0]["size"] = [48, 64]
    path.write_text(json.dumps(masks))
    with pytest.raises(DataFormatError) as err:
        read_revos(tmp_path)
    assert err.value.path.endswith("mask_dict.json")
    assert err.value.field == '["1"][0].size'
    assert "[48, 64]" in str(err.value) and "[24, 32]" in str(err.value)
    with pytest.warns(BadInputWarning, match="size"):
        index = read_revos(tmp_path, skip_bad=True)
    assert {r.key for r in index} == {"vid_a/0", "vid_a/1", "vid_a/3", "vid_b/0"}


def test_expression_naming_missing_annotation(tmp_path, videos):
    write_revos(tmp_path, videos)
    path, meta = _meta(tmp_path)
    meta["videos"]["vid_b"]["expressions"]["0"]["anno_id"] = ["999"]
    path.write_text(json.dumps(meta))
    with pytest.raises(DataFormatError) as err:
        read_revos(tmp_path)
    assert err.value.field == 'videos["vid_b"].expressions["0"].anno_id'
    assert "'999'" in str(err.value)


def test_mask_list_length_disagreeing_with_frames(tmp_path, videos):
    write_revos(tmp_path, videos)
    path = tmp_path / "mask_dict.json"
    masks = json.loads(path.read_text())
    masks["0"] = masks["0"][:2]
    path.write_text(json.dumps(masks))
    with pytest.raises(DataFormatError, match=r"has 2 per-frame entries but the video has 4"):
        read_revos(tmp_path)


def test_empty_video(tmp_path, videos):
    write_revos(tmp_path, videos)
    path, meta = _meta(tmp_path)
    meta["videos"]["vid_b"]["frames"] = []
    path.write_text(json.dumps(meta))
    with pytest.raises(DataFormatError) as err:
        read_revos(tmp_path)
    assert err.value.field == 'videos["vid_b"].frames' and "empty video" in str(err.value)


def test_bad_type_id_and_missing_meta(tmp_path, videos):
    write_revos(tmp_path, videos)
    path, meta = _meta(tmp_path)
    meta["videos"]["vid_b"]["expressions"]["0"]["type_id"] = 7
    path.write_text(json.dumps(meta))
    with pytest.raises(DataFormatError, match=r"type_id: 7 is not 0, 1 or 2"):
        read_revos(tmp_path)
    with pytest.raises(DataFormatError, match="meta_expressions"):
        read_revos(tmp_path / "nowhere")


def test_frame_decoded_with_wrong_size_at_load_time(tmp_path, videos):
    write_revos(tmp_path, videos)
    index = read_revos(tmp_path, verify_frames=False)
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "JPEGImages" / "vid_b" / "00003.jpg")
    rec = next(r for r in index if r.video_id == "vid_b")
    with pytest.raises(DataFormatError, match=r"vid_b/00003\.jpg: frame: size \[8, 8\]"):
        rec.load_frames()
