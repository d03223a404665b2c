"""`jaxseg eval`: score predicted masks against a benchmark on disk.

    jaxseg eval --pred PRED_DIR --data DATA_DIR [--format revos] [--split valid]
                [--skip-bad] [--workers N] [--out results.json]

Predictions use the community submission layout `PRED_DIR/<video>/<exp_id>/<frame>.png`
(any non-zero pixel is foreground). Prints J, F, J&F and R per subset with the benchmark's
own averaging convention and writes everything, per-expression scores included, to JSON.
Paths may be buckets (gs://...: read from a local copy, --out uploaded). A --pred in which
no video of the benchmark has a prediction folder is an error (exit 2), as is bad data.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from jaxseg.data.readers import READERS

    parser.add_argument("--pred", required=True, help="predictions <video>/<exp>/<frame>.png")
    parser.add_argument("--data", required=True, help="benchmark root in its native layout")
    parser.add_argument(
        "--format", default="revos", choices=sorted(READERS), help="benchmark layout"
    )
    parser.add_argument(
        "--split", default=None, help="split name (default: the benchmark's eval split)"
    )
    parser.add_argument(
        "--skip-bad",
        action="store_true",
        help="count and warn about bad data / predictions instead of stopping at the first",
    )
    parser.add_argument(
        "--visa-raw",
        action="store_true",
        help="ReVOS: A and R on raw PNG values, bit for bit as VISA's eval_revos.py "
        "(0/255 masks count false positives 255x); default: binary masks",
    )
    parser.add_argument("--workers", type=int, default=1, help="scoring processes")
    parser.add_argument("--out", default=None, help="write results JSON here")


def run(args: argparse.Namespace) -> int:
    from jaxseg.config import ConfigError
    from jaxseg.data.readers import read_dataset
    from jaxseg.eval.aggregate import format_table, summarize
    from jaxseg.eval.scoring import score_all
    from jaxseg.paths import as_path, is_remote, local_dir

    if not as_path(args.pred).is_dir():
        raise NotADirectoryError(f"--pred {args.pred} is not a directory")
    data = local_dir(args.data)  # a bucket: a cached local copy
    index = read_dataset(args.format, data, args.split, skip_bad=args.skip_bad)
    if len(index) and not index[0].has_masks:
        raise ConfigError(f"{args.data} ({args.format}) has no ground-truth masks")
    pred_dir = local_dir(args.pred, cache=False)  # a bucket: a temporary local copy
    try:
        pred = _prediction_root(pred_dir, index)
        videos = sorted({r.video_id for r in index})
        if videos and not any((pred / v).is_dir() for v in videos):
            hint = ""
            if (pred / "pred").is_dir():
                hint = f" (did you mean {str(args.pred).rstrip('/')}/pred?)"
            raise ConfigError(
                f"--pred {args.pred} matches no prediction: none of the {len(videos)} videos of "
                f"{args.data} ({', '.join(videos[:3])}{', ...' if len(videos) > 3 else ''}) has a "
                f"folder <video>/<exp>/<frame>.png there{hint}"
            )
        scores, bad_predictions = score_all(
            index, pred, skip_bad=args.skip_bad, workers=args.workers, visa_raw=args.visa_raw
        )
    finally:
        if is_remote(args.pred):
            shutil.rmtree(pred_dir, ignore_errors=True)
    summary = summarize(scores, args.format)
    missing = sum(s.status == "missing" for s in scores)
    print(f"{args.format}: {len(scores)} expressions scored from {args.pred}")
    print(format_table(summary))
    if missing:
        print(f"{missing} expressions had no prediction folder and scored 0 (benchmark rule)")
    skipped = index.skipped + bad_predictions
    if skipped:
        print(f"{len(skipped)} bad items skipped (--skip-bad): first: {skipped[0]}")
    if args.out is not None:
        result = {
            "format": args.format,
            "data": str(args.data),
            "pred": str(args.pred),
            "split": args.split,
            "r_definition": "visa-uint8-raw" if args.visa_raw else "binary",
            "summary": summary,
            "missing_predictions": missing,
            "skipped": [str(e) for e in skipped],
            "expressions": [s.as_dict() for s in scores],
        }
        out = as_path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(_finite(result), indent=2))
        print(f"wrote {args.out}")
    return 0


def _prediction_root(pred: Path, index) -> Path:
    """`pred`, or `pred/Annotations` when only that holds the video folders (the layout the
    VISA / Veason-R1 / VideoLISA inference scripts write)."""
    videos = {r.video_id for r in index}
    if any((pred / v).is_dir() for v in videos):
        return pred
    nested = pred / "Annotations"
    if nested.is_dir() and any((nested / v).is_dir() for v in videos):
        print(f"reading predictions from {nested}")
        return nested
    return pred


def _finite(obj):
    """JSON has no NaN: write null."""
    if isinstance(obj, float):
        return None if obj != obj else obj
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj
