"""Score one expression's predicted masks against its GT, with its benchmark's rules.

Which frames count, and what a missing prediction means, differ per benchmark
(each benchmark's own evaluation script): all frames for ReVOS / MeViS / Long-RVOS / Ref-DAVIS17, only the
annotated frames for ReasonVOS and Ref-YouTube-VOS; a missing prediction folder scores 0 for
ReVOS / MeViS / Long-RVOS, is skipped for ReasonVOS and is an error for the DAVIS-style sets.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxseg.data.readers.errors import BadInputPolicy, DataFormatError
from jaxseg.data.readers.records import VideoExpression
from jaxseg.eval import metrics
from jaxseg.eval.aggregate import ExpressionScore, subset_name
from jaxseg.eval.predictions import has_prediction, load_prediction

MISSING_SCORES_ZERO = {"revos", "mevis", "long_rvos"}
MISSING_IS_SKIPPED = {"reasonvos"}
ANNOTATED_FRAMES_ONLY = {"reasonvos", "ref_youtube_vos"}


def scored_positions(record: VideoExpression) -> list[int]:
    if record.dataset in ANNOTATED_FRAMES_ONLY:
        return list(record.extras.get("annotated", ()))
    return list(range(record.num_frames))


def _zero(record: VideoExpression, status: str, n: int) -> ExpressionScore:
    subset = subset_name(record.dataset, record.type_id, dict(record.extras))
    zeros = {"J": 0.0, "F": 0.0, "A": 0.0, "R": 0.0}
    if record.dataset == "long_rvos":
        zeros.update(tIoU=0.0, vIoU=0.0)
    return ExpressionScore(
        record.video_id, record.exp_id, subset, num_frames=n, status=status, **zeros
    )


def _visa_raw_values(record: VideoExpression, pred_root, positions) -> tuple:
    """uint8 GT (sum of the anno masks), prediction grey values and foreground, as VISA's
    `eval_revos.py` builds them before `get_r2vos_accuracy` / `get_r2vos_robustness`."""
    from PIL import Image

    gt = record.object_masks(positions).astype(np.uint8).sum(axis=0, dtype=np.uint8)
    folder = Path(pred_root) / record.video_id / record.exp_id
    pred = np.stack(
        [
            np.asarray(Image.open(folder / f"{record.frame_names[p]}.png").convert("L"))
            for p in positions
        ]
    )
    fg = record.foreground.union(positions).astype(np.uint8)  # an OR, as VISA builds it
    return gt, pred, fg


def score_expression(
    record: VideoExpression,
    pred_root: str | Path,
    bound_th: float = metrics.BOUND_TH,
    visa_raw: bool = False,
) -> ExpressionScore | None:
    """None when the benchmark skips this expression (ReasonVOS without a prediction).

    visa_raw (ReVOS): A and R from raw uint8 PNG values exactly as VISA's script computes
    them (0/255 predictions count each false positive 255 times),
    instead of the binary definitions.
    """
    positions = scored_positions(record)
    if not has_prediction(pred_root, record.video_id, record.exp_id):
        if record.dataset in MISSING_SCORES_ZERO:
            return _zero(record, "missing", len(positions))
        if record.dataset in MISSING_IS_SKIPPED:
            return None
        raise DataFormatError(
            Path(pred_root) / record.video_id / record.exp_id,
            "prediction",
            "folder is missing",
        )
    gt = record.target_masks(positions)
    pred = load_prediction(
        pred_root,
        record.video_id,
        record.exp_id,
        [record.frame_names[p] for p in positions],
        record.height,
        record.width,
        missing_frame_is_empty=record.dataset == "long_rvos",
    )
    j = metrics.region_iou(gt, pred)
    f = metrics.boundary_f(gt, pred, bound_th=bound_th)
    fg = record.foreground_masks(positions)
    r = metrics.robustness(gt, pred, fg).mean() if fg is not None else float("nan")
    score = ExpressionScore(
        record.video_id,
        record.exp_id,
        subset_name(record.dataset, record.type_id, dict(record.extras)),
        J=float(j.mean()),
        F=float(f.mean()),
        A=float(metrics.pixel_accuracy(gt, pred).mean()),
        R=float(r),
        num_frames=len(positions),
    )
    if record.dataset == "long_rvos":
        score.tIoU, score.vIoU = metrics.temporal_iou(gt, pred, j)
    if visa_raw and record.foreground is not None:
        gt_u8, pred_u8, fg_u8 = _visa_raw_values(record, pred_root, positions)
        score.A = float(np.mean(gt_u8 == pred_u8, axis=(-2, -1)).mean())
        score.R = float(metrics.robustness_visa_uint8(gt_u8, pred_u8, fg_u8).mean())
    return score


def _score_one(args) -> tuple[ExpressionScore | None, DataFormatError | None]:
    record, pred_root, bound_th, visa_raw = args
    try:
        return score_expression(record, pred_root, bound_th, visa_raw), None
    except DataFormatError as err:
        return None, err


def score_all(
    records: Sequence[VideoExpression],
    pred_root: str | Path,
    *,
    skip_bad: bool = False,
    workers: int = 1,
    bound_th: float = metrics.BOUND_TH,
    visa_raw: bool = False,
) -> tuple[list[ExpressionScore], list[DataFormatError]]:
    """Score every record. A bad prediction raises; with skip_bad it is counted and scored 0
    where the benchmark scores failures 0 (ReVOS / MeViS / Long-RVOS), else left out."""
    policy = BadInputPolicy(skip_bad)
    if records and records[0].dataset == "ref_davis17":
        from jaxseg.eval.davis import score_ref_davis17

        return score_ref_davis17(records, pred_root, bound_th, policy), policy.skipped
    jobs = [(r, str(pred_root), bound_th, visa_raw) for r in records]
    if workers > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(workers) as pool:
            results = pool.map(_score_one, jobs, chunksize=4)
    else:
        results = map(_score_one, jobs)
    scores: list[ExpressionScore] = []
    for record, (score, err) in zip(records, results):
        if err is not None:
            policy.report(err)  # raises unless skip_bad
            if record.dataset in MISSING_SCORES_ZERO:
                scores.append(_zero(record, "bad", len(scored_positions(record))))
            continue
        if score is not None:
            scores.append(score)
    return scores, policy.skipped
