"""ReVOS / MeViS tfds builders (manual_dir -> array_record, no TensorFlow) and the grain
source over them: records, frames and masks identical to the on-disk readers."""

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from jaxseg.data.pipeline import ShuffledSteps  # noqa: E402
from jaxseg.data.readers import read_mevis, read_revos  # noqa: E402
from jaxseg.data.readers.layouts import (  # noqa: E402
    ExpressionSpec,
    VideoSpec,
    write_mevis,
    write_revos,
)
from jaxseg.data.tfds import TfdsExpressionSource, prepare  # noqa: E402


def videos():
    rng = np.random.default_rng(2)
    out = []
    for v in range(3):
        a = np.zeros((5, 16, 20), bool)
        a[:, 2 : 6 + v, 3:9] = True
        b = np.zeros((5, 16, 20), bool)
        b[1:4, 9:14, 10:18] = True
        exps = [ExpressionSpec("a", [1], 0), ExpressionSpec("both", [1, 2], 1)]
        if v == 1:
            exps.append(ExpressionSpec("nothing", [], 2))
        out.append(
            VideoSpec(f"vid{v}", rng.integers(0, 255, (5, 16, 20, 3), np.uint8), {1: a, 2: b}, exps)
        )
    return out


def assert_same_records(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert (x.key, x.expression, x.type_id, x.target_ids) == (
            y.key,
            y.expression,
            y.type_id,
            y.target_ids,
        )
        assert x.frame_ids == y.frame_ids and (x.height, x.width) == (y.height, y.width)
        np.testing.assert_array_equal(x.target_masks(), y.target_masks())
        np.testing.assert_array_equal(x.load_frames(), y.load_frames())
        fx, fy = x.foreground_masks(), y.foreground_masks()
        assert (fx is None) == (fy is None)
        if fx is not None:
            np.testing.assert_array_equal(fx, fy)


def test_revos_builder_round_trip(tmp_path):
    write_revos(tmp_path / "manual", videos(), split="valid")
    prepare("revos", tmp_path / "manual", tmp_path / "tfds")
    assert list((tmp_path / "tfds" / "revos" / "1.0.0").glob("*.array_record*"))
    source = TfdsExpressionSource("revos", tmp_path / "tfds", "valid")
    disk = read_revos(tmp_path / "manual", "valid")
    assert_same_records(source, disk)
    # a step feed's order over either source reads the same records
    order = ShuffledSteps(len(disk), 3, seed=4)
    keys = lambda src: [[src[i].key for i in order.map(s)[1]] for s in range(3)]  # noqa: E731
    assert keys(source) == keys(disk)


def test_mevis_builder_round_trip(tmp_path):
    write_mevis(tmp_path / "manual", videos(), split="valid_u")
    prepare("mevis", tmp_path / "manual", tmp_path / "tfds")
    source = TfdsExpressionSource("mevis", tmp_path / "tfds", "valid_u")
    assert_same_records(source, read_mevis(tmp_path / "manual", "valid_u"))
    with pytest.raises(KeyError, match="not prepared"):
        TfdsExpressionSource("mevis", tmp_path / "tfds", "train")
