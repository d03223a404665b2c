"""Long-RVOS reader: per-object PNG folders, missing PNG = object absent, type per expression."""

import json

import numpy as np
import pytest

from jaxseg.data.readers import DataFormatError, read_long_rvos
from jaxseg.data.readers.errors import BadInputWarning
from jaxseg.data.readers.layouts import write_long_rvos


def test_missing_png_means_absent(tmp_path, videos_single_target):
    write_long_rvos(tmp_path, videos_single_target, split="valid")
    index = read_long_rvos(tmp_path, "valid")
    rec = next(r for r in index if r.key == "vid_a/1")
    assert rec.extras["long_rvos_type"] == "dynamic"
    assert not (tmp_path / "valid" / "Annotations" / "vid_a" / "1" / "00002.png").exists()
    np.testing.assert_array_equal(rec.target_masks(), videos_single_target[0].objects[1])


def test_bad_type_and_missing_object(tmp_path, videos_single_target):
    write_long_rvos(tmp_path, videos_single_target, split="valid")
    path = tmp_path / "valid" / "meta_expressions.json"
    meta = json.loads(path.read_text())
    meta["videos"]["vid_a"]["expressions"]["0"]["type"] = "weird"
    meta["videos"]["vid_b"]["expressions"]["0"]["obj_id"] = "9"
    path.write_text(json.dumps(meta))
    with pytest.raises(DataFormatError, match=r"type: 'weird'"):
        read_long_rvos(tmp_path, "valid")
    with pytest.warns(BadInputWarning, match="skipped bad input"):
        index = read_long_rvos(tmp_path, "valid", skip_bad=True)
    assert len(index.skipped) == 2 and len(index) == 1
    assert "names object 9" in str(index.skipped[1])
