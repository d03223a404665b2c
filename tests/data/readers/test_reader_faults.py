"""Faults injected into benchmark files: truncated mask RLEs, meta
fields of the wrong type, frame/video names escaping the root, a truncated scene graph."""

import json
import warnings

import numpy as np
import pycocotools.mask as mask_utils
import pytest

from jaxseg.data.readers import DataFormatError, read_revos
from jaxseg.data.readers.errors import BadInputWarning
from jaxseg.data.readers.layouts import write_revos
from jaxseg.data.readers.masks import rle_counts


def _masks(root):
    path = root / "mask_dict.json"
    return path, json.loads(path.read_text())


def _meta(root):
    path = root / "meta_expressions_valid_.json"
    return path, json.loads(path.read_text())


def _skip(root):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        index = read_revos(root, skip_bad=True)
    assert sum(issubclass(w.category, BadInputWarning) for w in caught) == len(index.skipped)
    return index


def test_rle_counts_decodes_like_pycocotools():
    rng = np.random.default_rng(0)
    for _ in range(50):
        h, w = rng.integers(1, 70, 2)
        a = np.asfortranarray(rng.random((h, w)) < rng.random())
        rle = mask_utils.encode(a.astype(np.uint8))
        counts = rle_counts(rle["counts"].decode())
        flat = a.flatten(order="F")
        changes = np.flatnonzero(np.diff(np.concatenate([[False], flat, [not flat[-1]]])))
        assert counts.sum() == h * w
        np.testing.assert_array_equal(
            counts[counts > 0],
            np.diff(np.concatenate([[0], changes]))[np.diff(np.concatenate([[0], changes])) > 0],
        )
    with pytest.raises(ValueError, match="truncated"):
        rle_counts("0`")  # ends on a continuation character


@pytest.mark.parametrize("cut", ["string", "list", "overlong"])
def test_truncated_rle_names_file_and_field(tmp_path, videos, cut):
    write_revos(tmp_path, videos)
    path, masks = _masks(tmp_path)
    rle = masks["1"][1]
    if cut == "string":
        rle["counts"] = rle["counts"][: len(rle["counts"]) // 2]
    else:
        h, w = rle["size"]
        counts = rle_counts(rle["counts"]).tolist()
        rle["counts"] = counts[:-1] if cut == "list" else [*counts, 7]
    path.write_text(json.dumps(masks))
    with pytest.raises(DataFormatError) as err:
        read_revos(tmp_path)
    assert err.value.path == str(path)
    assert err.value.field == '["1"][1].counts'
    assert "24 x 32 = 768" in str(err.value) or "truncated" in str(err.value)
    index = _skip(tmp_path)  # the expressions of that annotation go, the others stay
    assert {r.key for r in index} == {"vid_a/0", "vid_a/1", "vid_a/3", "vid_b/0"}
    for r in index:
        assert r.masks.decode().shape[1:] == (4, 24, 32)


@pytest.mark.parametrize(
    "where, value, field, says",
    [
        ("video", ("height", "tall"), 'videos["vid_b"].height', "'tall' is not an integer"),
        ("video", ("width", 32.5), 'videos["vid_b"].width', "32.5 is not an integer"),
        (
            "exp",
            ("type_id", "reasoning"),
            'videos["vid_b"].expressions["0"].type_id',
            "'reasoning' is not an integer",
        ),
        ("exp", ("type_id", True), 'videos["vid_b"].expressions["0"].type_id', "True"),
        ("exp", ("exp", None), 'videos["vid_b"].expressions["0"].exp', "None is not a non-empty"),
        ("exp", ("exp", 42), 'videos["vid_b"].expressions["0"].exp', "42 is not a non-empty"),
        ("exp", ("exp", "  "), 'videos["vid_b"].expressions["0"].exp', "is not a non-empty"),
    ],
)
def test_bad_meta_fields_are_named_and_skippable(tmp_path, videos, where, value, field, says):
    write_revos(tmp_path, videos)
    path, meta = _meta(tmp_path)
    target = meta["videos"]["vid_b"]
    if where == "exp":
        target = target["expressions"]["0"]
    target[value[0]] = value[1]
    path.write_text(json.dumps(meta))
    with pytest.raises(DataFormatError) as err:
        read_revos(tmp_path)
    assert err.value.path == str(path) and err.value.field == field
    assert says in str(err.value)
    index = _skip(tmp_path)
    assert len(index.skipped) == 1 and {r.video_id for r in index} == {"vid_a"}
    assert all(r.expression != "None" for r in index)


@pytest.mark.parametrize(
    "frame, video",
    [("../../../etc/passwd", None), ("/etc/passwd", None), (None, "../outside"), (None, "/abs")],
)
def test_names_may_not_escape_the_dataset_root(tmp_path, videos, frame, video):
    root = tmp_path / "data"
    write_revos(root, videos)
    (tmp_path / "outside").mkdir()
    path, meta = _meta(root)
    if frame is not None:
        meta["videos"]["vid_b"]["frames"][2] = frame
        field = 'videos["vid_b"].frames[2]'
    else:
        meta["videos"][video] = meta["videos"].pop("vid_b")
        field = f'videos["{video}"]'
    path.write_text(json.dumps(meta))
    with pytest.raises(DataFormatError, match="not a name inside the dataset") as err:
        read_revos(root)
    assert err.value.field == field
    index = _skip(root)
    assert {r.video_id for r in index} == {"vid_a"}


def test_truncated_or_bad_scene_graph_is_named(tmp_path, videos):
    from jaxseg.train.samples import SampleSource

    write_revos(tmp_path, videos)
    graphs = {
        "videos": {
            "vid_a": {"graph": {"objects": []}, "anno_id": [0, 1]},
            "vid_b": {"graph": {"objects": []}, "anno_id": [2]},
        }
    }
    path = tmp_path / "synth_scene_graph_valid_.json"
    text = json.dumps(graphs)
    path.write_text(text[: len(text) // 2])
    with pytest.raises(DataFormatError, match=r"synth_scene_graph_valid_\.json: synth_scene_graph"):
        SampleSource(tmp_path, "valid")
    graphs["videos"]["vid_b"]["anno_id"] = ["two"]
    path.write_text(json.dumps(graphs))
    with pytest.raises(DataFormatError) as err:
        SampleSource(tmp_path, "valid")
    assert err.value.field == 'videos["vid_b"].anno_id[0]'
    with pytest.warns(BadInputWarning, match="anno_id"):
        source = SampleSource(tmp_path, "valid", skip_bad=True)
    assert len(source.skipped) == 1 and "vid_b" not in source._graphs
