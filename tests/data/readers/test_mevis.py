"""MeViS reader: same files as ReVOS, one folder per split, no type ids."""

import json

import numpy as np
import pytest

from jaxseg.data.readers import DataFormatError, read_mevis
from jaxseg.data.readers.errors import BadInputWarning
from jaxseg.data.readers.layouts import write_mevis


def test_reads_union_of_anno_ids_without_type_ids(tmp_path, videos):
    write_mevis(tmp_path, videos, split="valid_u")
    index = read_mevis(tmp_path, "valid_u")
    assert len(index) == 5
    both = next(r for r in index if r.key == "vid_a/2")
    assert both.type_id == 0 and both.is_multi_object
    np.testing.assert_array_equal(both.target_masks(), videos[0].objects[1] | videos[0].objects[2])
    assert both.foreground is not None  # union of the video's annotations


def test_split_without_masks_has_no_gt(tmp_path, videos):
    write_mevis(tmp_path, videos, split="valid")
    (tmp_path / "valid" / "mask_dict.json").unlink()
    index = read_mevis(tmp_path, "valid")
    assert len(index) == 5 and not index[0].has_masks
    with pytest.raises(DataFormatError, match="no ground-truth masks"):
        index[0].target_masks()


def test_missing_anno_and_missing_meta(tmp_path, videos):
    write_mevis(tmp_path, videos, split="train")
    path = tmp_path / "train" / "meta_expressions.json"
    meta = json.loads(path.read_text())
    meta["videos"]["vid_a"]["expressions"]["1"]["anno_id"] = [42]
    path.write_text(json.dumps(meta))
    with pytest.raises(DataFormatError, match=r'expressions\["1"\]\.anno_id: names annotation'):
        read_mevis(tmp_path, "train")
    with pytest.warns(BadInputWarning, match="anno_id"):
        assert len(read_mevis(tmp_path, "train", skip_bad=True).skipped) == 1
    with pytest.raises(DataFormatError, match="file is missing"):
        read_mevis(tmp_path, "valid_u")
