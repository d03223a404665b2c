"""tensorflow-datasets builders for ReVOS and MeViS from a manual download (`manual_dir`),
written as array_record so grain reads them with random access, no TensorFlow needed
(checked with tensorflow-datasets 4.9.10 installed without tensorflow).

One example per *video* (frames stored once, as the original JPEG bytes, never re-encoded),
holding all of its expressions; `TfdsExpressionSource` flattens them back to one record per
(video, expression). Shuffling is disabled so example i is the i-th video generated, and the
per-video expression counts live in the dataset metadata, so the flat index is built without
reading any example.

    from jaxseg.data.tfds import prepare
    builder = prepare("revos", manual_dir="/data/ReVOS", data_dir="~/tensorflow_datasets")
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from jaxseg.data.readers.mevis import read_mevis
from jaxseg.data.readers.records import ExpressionIndex, VideoExpression
from jaxseg.data.readers.revos import read_revos

_MANUAL = """\
Place the benchmark in `manual_dir` in its native layout:
- revos: JPEGImages/, mask_dict.json, [mask_dict_foreground.json],
  meta_expressions_{train,valid}_.json (VISA layout; the synthetic benchmark uses it too);
- mevis: {train,valid_u,valid}/{JPEGImages/, meta_expressions.json, [mask_dict.json]}.
"""


def _features() -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict(
        {
            "video_id": tfds.features.Text(),
            "frame_names": tfds.features.Sequence(tfds.features.Text()),
            "frame_ids": tfds.features.Tensor(shape=(None,), dtype=np.int64),
            "height": np.int64,
            "width": np.int64,
            "frames_jpeg": tfds.features.Sequence(tfds.features.Tensor(shape=(), dtype=np.object_)),
            # JSON: [{"exp_id", "exp", "type_id", "target_ids", "extras"}]
            "expressions_json": tfds.features.Text(),
            # JSON: {anno_id: [COCO RLE | null per frame]} for the video's annotations
            "masks_json": tfds.features.Text(),
            # JSON: [[RLE | null per frame] per object] (union = foreground) or null
            "foreground_json": tfds.features.Text(),
        }
    )


def _video_examples(index: ExpressionIndex):
    """Group an index's records by video, in order: (video_id, [records])."""
    groups: dict[str, list[VideoExpression]] = {}
    for record in index:
        groups.setdefault(record.video_id, []).append(record)
    return list(groups.items())


def _example(video_id: str, records: list[VideoExpression]) -> dict:
    first = records[0]
    masks: dict[str, list] = {}
    for r in records:
        if r.masks is not None:
            for aid, rles in zip(r.target_ids, r.masks.rles):
                masks[aid] = list(rles)
    foreground = None  # the per-object RLE lists whose union is the foreground
    if first.foreground is not None:
        foreground = [list(r) for r in first.foreground.rles]
    expressions = [
        {
            "exp_id": r.exp_id,
            "exp": r.expression,
            "type_id": r.type_id,
            "target_ids": list(r.target_ids),
            "has_masks": r.masks is not None,
            "extras": dict(r.extras),
        }
        for r in records
    ]
    return {
        "video_id": video_id,
        "frame_names": list(first.frame_names),
        "frame_ids": np.asarray(first.frame_ids, np.int64),
        "height": first.height,
        "width": first.width,
        "frames_jpeg": [Path(p).read_bytes() for p in first.frame_paths],
        "expressions_json": json.dumps(expressions),
        "masks_json": json.dumps(masks),
        "foreground_json": json.dumps(foreground),
    }


class _VideoBenchmark(tfds.core.GeneratorBasedBuilder):
    """Shared builder: subclasses say which splits exist and how to read one."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: one example per video, JPEG bytes kept."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = _MANUAL

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        """This file. tfds' default lookup lazily imports the `importlib_resources` backport,
        which tensorflow-datasets 4.9.10 does not install; nothing else here needs it."""
        return epath.Path(__file__)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.__doc__,
            features=_features(),
            metadata=tfds.core.MetadataDict(),
            disable_shuffling=True,
        )

    def _splits_in(self, root: Path) -> list[str]:
        raise NotImplementedError

    def _read(self, root: Path, split: str) -> ExpressionIndex:
        raise NotImplementedError

    def _split_generators(self, dl_manager):
        root = Path(dl_manager.manual_dir)
        splits = self._splits_in(root)
        if not splits:
            raise FileNotFoundError(f"{root}: no split found.\n{_MANUAL}")
        return {split: self._generate_examples(root, split) for split in splits}

    def _generate_examples(self, root: Path, split: str):
        videos = _video_examples(self._read(root, split))
        self.info.metadata[f"{split}/expressions_per_video"] = [len(rs) for _, rs in videos]
        for video_id, records in videos:
            yield video_id, _example(video_id, records)


class Revos(_VideoBenchmark):
    """ReVOS (reasoning video object segmentation, VISA layout) from a manual download."""

    def _splits_in(self, root: Path) -> list[str]:
        splits = [s for s in ("train", "valid") if (root / f"meta_expressions_{s}_.json").is_file()]
        if not splits and (root / "meta_expressions.json").is_file():
            splits = ["all"]
        return splits

    def _read(self, root: Path, split: str) -> ExpressionIndex:
        return read_revos(root, None if split == "all" else split)


class Mevis(_VideoBenchmark):
    """MeViS (motion expressions video segmentation) from a manual download."""

    def _splits_in(self, root: Path) -> list[str]:
        return [
            s
            for s in ("train", "valid_u", "valid")
            if (root / s / "meta_expressions.json").is_file()
        ]

    def _read(self, root: Path, split: str) -> ExpressionIndex:
        return read_mevis(root, split)


BUILDERS = {"revos": Revos, "mevis": Mevis}


def prepare(name: str, manual_dir: str | Path, data_dir: str | Path) -> tfds.core.DatasetBuilder:
    """Build (once) the array_record files of `name` ("revos" / "mevis") under data_dir."""
    builder = BUILDERS[name](data_dir=str(data_dir), file_format="array_record")
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir))
    )
    return builder
