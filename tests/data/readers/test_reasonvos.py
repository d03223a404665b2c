"""ReasonVOS reader: binary PNG per object, only annotated frames are scored."""

import numpy as np
import pytest

from jaxseg.data.readers import DataFormatError, read_reasonvos
from jaxseg.data.readers.errors import BadInputWarning
from jaxseg.data.readers.layouts import write_reasonvos


def test_reads_binary_masks_and_annotated_frames(tmp_path, videos_single_target):
    write_reasonvos(tmp_path, videos_single_target, source="mevis")
    gt_dir = tmp_path / "Annotations" / "mevis_vid_b_3"
    (gt_dir / "00003.png").unlink()  # frame 3 not annotated: not scored
    index = read_reasonvos(tmp_path)
    assert len(index) == 3
    rec = next(r for r in index if r.video_id == "vid_b")
    assert rec.exp_id == "3" and rec.extras["source"] == "mevis" and rec.extras["is_sent"]
    assert rec.extras["annotated"] == (0, 1, 2)
    np.testing.assert_array_equal(
        rec.target_masks([0, 1, 2]), videos_single_target[1].objects[3][:3]
    )


def test_missing_object_folder(tmp_path, videos_single_target):
    write_reasonvos(tmp_path, videos_single_target)
    import shutil

    shutil.rmtree(tmp_path / "Annotations" / "src_vid_b_3")
    with pytest.raises(DataFormatError, match=r"obj_id: names object 3, but .*src_vid_b_3"):
        read_reasonvos(tmp_path)
    with pytest.warns(BadInputWarning, match="src_vid_b_3"):
        assert len(read_reasonvos(tmp_path, skip_bad=True)) == 2


def test_empty_video_folder(tmp_path, videos_single_target):
    write_reasonvos(tmp_path, videos_single_target)
    for p in (tmp_path / "JPEGImages" / "vid_a").iterdir():
        p.unlink()
    with pytest.raises(DataFormatError, match="empty video"):
        read_reasonvos(tmp_path)


def test_list_form_expressions(tmp_path, videos_single_target):
    """Veason-R1's ReasonVOS meta lists expressions (with exp_id) instead of a mapping."""
    import json

    write_reasonvos(tmp_path, videos_single_target)
    path = tmp_path / "meta_expressions.json"
    meta = json.loads(path.read_text())
    for video in meta["videos"].values():
        video["expressions"] = [dict(e, exp_id=k) for k, e in video["expressions"].items()]
    path.write_text(json.dumps(meta))
    index = read_reasonvos(tmp_path)
    assert len(index) == 3 and {r.extras["meta_key"] for r in index} == {"0", "1"}
    meta["videos"]["vid_a"]["expressions"] = "oops"
    path.write_text(json.dumps(meta))
    with pytest.raises(DataFormatError, match=r'videos\["vid_a"\]\.expressions: is neither'):
        read_reasonvos(tmp_path)
