"""Episode samples from a benchmark on disk, loaded lazily (frames decoded on first use).

The synthetic benchmark's sidecar (`synth_scene_graph_<split>_.json`) adds each query's
explicit description (the protocols that rewrite the query, ReVSeg and RCoT, use it for the
oracle's cold-start traces); real benchmarks have none, and the reader path is the same.
"""

from __future__ import annotations

import functools
from pathlib import Path

from jaxseg.data.readers import read_dataset
from jaxseg.data.readers.common import field_of, int_of, load_json, videos_of
from jaxseg.data.readers.errors import BadInputPolicy, DataFormatError
from jaxseg.paths import local_dir
from jaxseg.protocols.sample import EpisodeSample, from_record, synth_description


def _synth_graphs(
    root: Path, split: str | None, policy: BadInputPolicy | None = None
) -> dict[str, tuple[dict, list[int]]]:
    """video id -> (scene graph, anno id of each object) from the synthetic sidecar. A file
    that is not JSON is a `DataFormatError`; a bad video entry is one naming its field (under
    `policy.skip_bad` that video is left without descriptions, with a warning)."""
    path = root / f"synth_scene_graph_{split}_.json"
    if not path.is_file():
        return {}
    policy = policy or BadInputPolicy()
    data = load_json(path, "synth_scene_graph")
    videos = videos_of(data, path)
    out = {}
    for vid, v in videos.items():
        field = f'videos["{vid}"]'
        try:
            graph = field_of(v, "graph", path, field)
            if not isinstance(graph, dict):
                raise DataFormatError(path, f"{field}.graph", "is not a mapping")
            ids = field_of(v, "anno_id", path, field)
            if not isinstance(ids, list):
                raise DataFormatError(path, f"{field}.anno_id", f"{ids!r} is not a list")
            out[vid] = (
                graph,
                [int_of(a, path, f"{field}.anno_id[{i}]") for i, a in enumerate(ids)],
            )
        except DataFormatError as err:
            policy.report(err)
    return out


class SampleSource:
    """Random access to `EpisodeSample`s of one split (`format`: a jaxseg.data.readers name)."""

    def __init__(
        self,
        root: str | Path,
        split: str | None,
        *,
        format: str = "revos",
        include_null: bool = True,
        cache_size: int = 256,
        skip_bad: bool = False,
    ):
        self.root = local_dir(root)  # a bucket's dataset is read from a local copy
        self.split = split
        self.index = read_dataset(format, self.root, split, skip_bad=skip_bad)
        policy = BadInputPolicy(skip_bad)
        self._graphs = _synth_graphs(self.root, split, policy)
        self.skipped = [*self.index.skipped, *policy.skipped]
        self.indices = [i for i, r in enumerate(self.index) if include_null or not r.is_null]
        if not self.indices:
            raise ValueError(f"{self.root} split {split!r}: no expressions")
        self._load = functools.lru_cache(maxsize=cache_size)(self._load_uncached)

    def __len__(self) -> int:
        return len(self.indices)

    def record(self, i: int):
        return self.index[self.indices[i]]

    def description(self, record) -> str | None:
        if record.video_id not in self._graphs or record.is_null:
            return None
        graph, anno_ids = self._graphs[record.video_id]
        try:
            targets = [anno_ids.index(int(a)) for a in record.target_ids]
        except ValueError:
            raise DataFormatError(
                self.root / f"synth_scene_graph_{self.split}_.json",
                f'videos["{record.video_id}"].anno_id',
                f"{anno_ids} lacks the expression's target {list(record.target_ids)}",
            ) from None
        return synth_description(graph, targets)

    def _load_uncached(self, i: int) -> EpisodeSample:
        record = self.record(i)
        return from_record(record, description=self.description(record))

    def __getitem__(self, i: int) -> EpisodeSample:
        return self._load(int(i))
