"""Per-expression scores -> per-subset and overall numbers, with each benchmark's convention.

Conventions (the benchmarks' own evaluation scripts):
- revos (cilinyan/VISA `tools/eval_revos.py`): every expression's J, F, A, R are x100 and
  rounded to 2 decimals first; subsets referring (type 0) and reasoning (type 1);
  subset J&F = (mean J + mean F) / 2; overall = unweighted mean of the two subsets.
  type 2 (null target) is in no summary number; it is listed as an extra row.
- mevis, reasonvos, ref_youtube_vos: one subset, means over expressions; J&F = (J + F) / 2.
- long_rvos (`eval/eval_long_rvos/eval_*.py`): subsets static / dynamic / hybrid; overall =
  mean over all expressions; also tIoU and vIoU.
- ref_davis17: one subset per annotator (exp_id % 4), each the mean over all GT objects of
  the davis2017 unsupervised protocol (`jaxseg.eval.davis`); overall = mean of the annotators.
All numbers are percentages.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence

import numpy as np

_SUBSET_ORDER = ("referring", "reasoning", "null", "static", "dynamic", "hybrid")
METRICS = ("J", "F", "JF", "R", "A", "tIoU", "vIoU")
NAN = float("nan")


@dataclasses.dataclass
class ExpressionScore:
    """Means over the scored frames of one expression, as fractions in [0, 1]."""

    video_id: str
    exp_id: str
    subset: str
    J: float
    F: float
    A: float = NAN
    R: float = NAN
    tIoU: float = NAN
    vIoU: float = NAN
    num_frames: int = 0
    status: str = "scored"  # scored | missing (scored 0 by convention) | bad (scored 0)

    @property
    def JF(self) -> float:
        return (self.J + self.F) / 2

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["JF"] = self.JF
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}


def subset_name(dataset: str, type_id: int, extras: dict) -> str:
    if dataset == "revos":
        return {0: "referring", 1: "reasoning", 2: "null"}[type_id]
    if dataset == "long_rvos":
        return extras.get("long_rvos_type") or "static"
    if dataset == "ref_davis17":
        return f"annotator_{extras.get('annotator', 0)}"
    return "all"


def _mean(values: Iterable[float]) -> float:
    arr = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    return float(arr.mean()) if arr.size else NAN


def _plain_summary(scores: Sequence[ExpressionScore]) -> dict:
    """Means over expressions, x100; J&F from the J and F means."""
    out = {m: 100 * _mean(getattr(s, m) for s in scores) for m in METRICS if m != "JF"}
    out["JF"] = (out["J"] + out["F"]) / 2
    out["count"] = len(scores)
    return out


def _revos_summary(scores: Sequence[ExpressionScore]) -> dict:
    """VISA: x100 and round(., 2) per expression before averaging."""
    out = {
        m: _mean(round(100 * getattr(s, m), 2) for s in scores if not math.isnan(getattr(s, m)))
        for m in ("J", "F", "A", "R")
    }
    out["JF"] = (out["J"] + out["F"]) / 2
    out["tIoU"] = out["vIoU"] = NAN
    out["count"] = len(scores)
    return out


def summarize(scores: Sequence[ExpressionScore], dataset: str) -> dict:
    """{"subsets": {name: {metric: value, "count": n}}, "overall": {...}, "note": str}."""
    groups: dict[str, list[ExpressionScore]] = {}
    for s in scores:
        groups.setdefault(s.subset, []).append(s)
    summary = _revos_summary if dataset == "revos" else _plain_summary
    order = {name: i for i, name in enumerate(_SUBSET_ORDER)}
    names = sorted(groups, key=lambda n: (order.get(n, len(order)), n))
    subsets = {name: summary(groups[name]) for name in names}

    if dataset == "revos":
        parts = [subsets[k] for k in ("referring", "reasoning") if k in subsets]
        overall = {m: _mean(p[m] for p in parts) for m in METRICS}
        overall["count"] = sum(p["count"] for p in parts)
        note = "overall = mean of the referring and reasoning subsets; null (type 2) excluded"
        if len(parts) < 2:
            note += f"; only {[k for k in ('referring', 'reasoning') if k in subsets]} present"
    elif dataset == "ref_davis17":
        parts = [v for k, v in subsets.items() if k.startswith("annotator_")]
        overall = {m: _mean(p[m] for p in parts) for m in METRICS}
        overall["count"] = sum(p["count"] for p in parts)
        note = (
            "overall = mean over annotators; each annotator: predictions merged into index "
            "maps, davis2017 unsupervised matching, mean over GT objects"
        )
    else:
        overall = _plain_summary(scores)
        note = "overall = mean over all expressions"
        if dataset == "ref_youtube_vos":
            note += (
                "; annotated frames only. Ref-YouTube-VOS valid is scored on the CodaLab "
                "server: offline numbers are not comparable"
            )
    return {"subsets": subsets, "overall": overall, "note": note}


def format_table(summary: dict, metrics: Sequence[str] = ("J", "F", "JF", "R")) -> str:
    """Fixed-width text table: one row per subset, then overall."""

    def cell(v) -> str:
        return "     -" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:6.2f}"

    header = f"{'subset':<14}" + "".join(f"{m:>8}" for m in metrics) + f"{'n':>7}"
    lines = [header, "-" * len(header)]
    rows = list(summary["subsets"].items()) + [("overall", summary["overall"])]
    for name, row in rows:
        label = "null (excl.)" if name == "null" else name
        lines.append(
            f"{label:<14}"
            + "".join(f"{cell(row.get(m)):>8}" for m in metrics)
            + f"{row.get('count', 0):>7}"
        )
    lines.append(summary["note"])
    return "\n".join(lines)
