"""Ref-DAVIS17 scored the way ReferFormer and VideoLISA score it (ReferFormer `eval_davis.py`).

For each annotator (exp_id % 4) and video:
1. merge the per-expression predicted masks into one index map per frame (VideoLISA
   `post_process_davis.py`: argmax of object scores against a 0.1 background; with binary
   masks the tie goes to the lowest object id);
2. evaluate with davis2017-evaluation's *unsupervised* protocol (`evaluation.py`
   `_evaluate_unsupervised`, `davis.py` `get_all_masks`, `results.py` `read_masks`):
   GT objects 1..max label of the first frame, predicted objects 1..max predicted label
   (padded with empty masks up to the GT count), void (255) ignored, all frames,
   predictions Hungarian-matched to GT objects on mean-over-frames (J + F) / 2;
3. J-Mean / F-Mean average over all GT objects of all videos (object-weighted).
The published number is the mean of the four annotators' J&F (`summarize`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from jaxseg.data.readers.errors import BadInputPolicy, DataFormatError
from jaxseg.data.readers.images import load_label_png
from jaxseg.data.readers.masks import PaletteMasks
from jaxseg.data.readers.records import VideoExpression
from jaxseg.eval import metrics
from jaxseg.eval.aggregate import ExpressionScore
from jaxseg.eval.predictions import has_prediction, load_prediction

VOID = 255
MAX_PROPOSALS = 20  # davis2017-evaluation's limit on predicted objects per sequence


def merge_masks(masks: dict[int, np.ndarray]) -> np.ndarray:
    """{object id: [T, H, W] bool} -> [T, H, W] uint8 index map, lowest id wins overlaps."""
    ids = sorted(masks)
    label = np.zeros(masks[ids[0]].shape, dtype=np.uint8)
    for k in ids:
        label[(label == 0) & masks[k]] = k
    return label


def evaluate_unsupervised(
    gt_labels: np.ndarray, pred_labels: np.ndarray, bound_th: float = metrics.BOUND_TH
) -> tuple[np.ndarray, np.ndarray]:
    """[T, H, W] GT and predicted index maps -> per-GT-object J and F ([n_gt, T] each),
    after Hungarian matching of predicted objects to GT objects."""
    void = gt_labels == VOID
    gt_clean = np.where(void, 0, gt_labels)
    n_gt = int(gt_clean[0].max())
    n_pred = int(pred_labels.max())
    if n_pred > MAX_PROPOSALS:
        raise ValueError(f"{n_pred} predicted objects; the DAVIS protocol allows {MAX_PROPOSALS}")
    n_res = max(n_pred, n_gt)
    gt = gt_clean[None] == np.arange(1, n_gt + 1)[:, None, None, None]  # [G, T, H, W]
    res = pred_labels[None] == np.arange(1, n_res + 1)[:, None, None, None]  # [R, T, H, W]
    j = np.zeros((n_res, n_gt, gt_labels.shape[0]))
    f = np.zeros_like(j)
    for g in range(n_gt):
        for r in range(n_res):
            j[r, g] = metrics.region_iou(gt[g], res[r], void)
            f[r, g] = metrics.boundary_f(gt[g], res[r], void, bound_th)
    rows, cols = linear_sum_assignment(-(j.mean(axis=2) + f.mean(axis=2)) / 2)
    order = np.argsort(cols)  # report in GT object order
    return j[rows[order], cols[order]], f[rows[order], cols[order]]


def _gt_labels(record: VideoExpression) -> np.ndarray:
    if not isinstance(record.masks, PaletteMasks):
        raise DataFormatError(record.dataset, f"{record.key}.masks", "needs palette PNG masks")
    out = np.zeros((record.num_frames, record.height, record.width), dtype=np.uint8)
    for t, path in enumerate(record.masks.png_paths):
        if path is not None:
            out[t] = load_label_png(path, field="annotation")
    return out


def score_ref_davis17(
    records: Sequence[VideoExpression],
    pred_root: str | Path,
    bound_th: float = metrics.BOUND_TH,
    policy: BadInputPolicy | None = None,
) -> list[ExpressionScore]:
    """One ExpressionScore per (annotator, video, GT object). A missing or bad prediction is
    an error (the DAVIS toolkit stops on a missing PNG); under a skip_bad policy that
    (annotator, video) is left out and counted."""
    policy = policy or BadInputPolicy(False)
    groups: dict[tuple[int, str], list[VideoExpression]] = defaultdict(list)
    for r in records:
        groups[(int(r.extras.get("annotator", 0)), r.video_id)].append(r)
    scores: list[ExpressionScore] = []
    for (annotator, video), recs in sorted(groups.items()):
        try:
            gt, pred = _labels(recs, pred_root)
        except DataFormatError as err:
            policy.report(err)
            continue
        j, f = evaluate_unsupervised(gt, pred, bound_th)
        for g in range(j.shape[0]):
            scores.append(
                ExpressionScore(
                    video,
                    f"object_{g + 1}",
                    f"annotator_{annotator}",
                    J=float(np.nanmean(j[g])),
                    F=float(np.nanmean(f[g])),
                    num_frames=j.shape[1],
                )
            )
    return scores


def _labels(recs: list[VideoExpression], pred_root) -> tuple[np.ndarray, np.ndarray]:
    """GT index maps and merged predicted index maps of one (annotator, video)."""
    masks = {}
    for r in recs:
        if not has_prediction(pred_root, r.video_id, r.exp_id):
            raise DataFormatError(
                Path(pred_root) / r.video_id / r.exp_id, "prediction", "folder is missing"
            )
        pred = load_prediction(pred_root, r.video_id, r.exp_id, r.frame_names, r.height, r.width)
        obj = int(r.target_ids[0])
        masks[obj] = masks[obj] | pred if obj in masks else pred
    return _gt_labels(recs[0]), merge_masks(masks)
