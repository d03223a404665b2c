"""Score a policy on a benchmark split the way the community scores a submission.

Episodes run with the policy and a mask backend; each episode's final masks are written as
PNGs in the submission layout, then `jaxseg.eval` scores them against the reader's ground
truth (J, F, J&F, robustness R, per subset). The PNGs stay on disk (the report's overlays
and `jaxseg eval` read them).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jaxseg.data.readers.layouts import write_prediction_pngs
from jaxseg.eval.aggregate import summarize
from jaxseg.eval.scoring import score_all
from jaxseg.paths import as_path, staged_dir

from .progress import tqdm
from .rollouts import RecordedEpisode, run_recorded
from .samples import SampleSource


def evaluate_policy(
    protocol,
    policy,
    source: SampleSource,
    *,
    backend,
    out_dir: str | Path,
    positions: Sequence[int] | None = None,
    chunk: int = 8,
    seed: int = 0,
    progress: bool = True,
) -> tuple[dict[str, Any], list[RecordedEpisode]]:
    """(summary from `jaxseg.eval.aggregate.summarize`, the episodes) on `positions` of
    `source` (default: all)."""
    positions = list(range(len(source))) if positions is None else list(positions)
    episodes: list[RecordedEpisode] = []
    # a bucket workdir: the PNGs are written and scored locally, then uploaded
    with staged_dir(as_path(out_dir) / "pred") as pred_root:
        bar = tqdm(total=len(positions), desc=f"eval {protocol.name}", disable=not progress)
        for start in range(0, len(positions), chunk):
            part = positions[start : start + chunk]
            samples = [source[i] for i in part]
            eps = run_recorded(protocol, policy, samples, backend=backend, seed=seed + start)
            for i, ep in zip(part, eps):
                record = source.record(i)
                write_prediction_pngs(
                    pred_root,
                    record.video_id,
                    record.exp_id,
                    record.frame_names,
                    ep.trace.pred_masks,
                )
            episodes += eps
            bar.update(len(part))
        bar.close()
        records = [source.record(i) for i in positions]
        scores, _ = score_all(records, pred_root)
    return summarize(scores, records[0].dataset), episodes
