"""`jaxseg data SUBCOMMAND`: dataset tools.

    jaxseg data synth --out DIR --videos N --seed S [--valid-videos M] [--split train|valid|both]
                      [--frames LO HI] [--size PX] [--objects LO HI] [--difficulty easy|medium|hard]
    jaxseg data show  --data DIR --out page.png [--split valid] [--rows 12]
    jaxseg data tokenizer --out DIR [--vocab-size 2048]

Subcommands register in `SUBCOMMANDS` (name -> (add_arguments, run, help)), so other
modules can add theirs (e.g. `data cot`) with one line each.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable

from jaxseg.commands import data_cot as _cot


def _add_synth(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output directory (ReVOS layout)")
    p.add_argument("--videos", type=int, required=True, help="videos in the train split")
    p.add_argument(
        "--valid-videos", type=int, default=None, help="videos in the valid split (default N//4)"
    )
    p.add_argument("--split", choices=["train", "valid", "both"], default="both")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--difficulty", choices=["easy", "medium", "hard"], default="medium")
    p.add_argument("--frames", type=int, nargs="+", metavar="N", help="frames: N or LO HI")
    p.add_argument("--size", type=int, help="frame side in px (default 128)")
    p.add_argument("--objects", type=int, nargs="+", metavar="N", help="objects: N or LO HI")
    p.add_argument("--queries", type=int, help="queries per video (default 6)")
    p.add_argument(
        "--position-ramp",
        type=float,
        help="chroma ramp amplitude that writes location into the background (default 0)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing benchmark")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _range(values: list[int] | None, flag: str) -> tuple[int, int] | None:
    if values is None:
        return None
    if len(values) not in (1, 2):
        raise SystemExit(f"jaxseg data synth: {flag} takes N or LO HI, got {values}")
    return (values[0], values[-1])


def _run_synth(args: argparse.Namespace) -> int:
    from jaxseg.data.synth import SynthConfig, write_benchmark

    overrides = {}
    for key, value in (
        ("frames", _range(args.frames, "--frames")),
        ("objects", _range(args.objects, "--objects")),
        ("size", args.size),
        ("queries_per_video", args.queries),
        ("position_ramp", args.position_ramp),
    ):
        if value is not None:
            overrides[key] = value
    try:
        cfg = SynthConfig.preset(args.difficulty, **overrides)
    except ValueError as err:
        raise SystemExit(f"jaxseg data synth: {err}") from None
    n_valid = args.valid_videos if args.valid_videos is not None else max(1, args.videos // 4)
    splits = {"train": args.videos, "valid": n_valid}
    if args.split != "both":
        splits = {args.split: splits[args.split]}
    start = time.perf_counter()
    from jaxseg.paths import as_path, is_remote, staged_dir

    out = as_path(args.out)
    if is_remote(out) and out.is_dir() and any(out.iterdir()) and not args.overwrite:
        raise SystemExit(f"jaxseg data synth: {out} is not empty (pass --overwrite)")
    try:
        with staged_dir(out) as local:  # a bucket (gs://...): written locally, uploaded
            summary = write_benchmark(
                local, splits, args.seed, cfg, overwrite=args.overwrite, progress=not args.quiet
            )
    except FileExistsError as err:
        raise SystemExit(f"jaxseg data synth: {err}") from None
    seconds = time.perf_counter() - start
    total = sum(splits.values())
    summary["seconds"] = round(seconds, 3)
    summary["videos_per_second"] = round(total / seconds, 2) if seconds > 0 else None
    print(json.dumps(summary, indent=1, default=str))
    print(f"wrote {out}", file=sys.stderr)  # stdout is the JSON summary
    return 0


def _add_show(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="a benchmark written by `jaxseg data synth`")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--split", default="valid")
    p.add_argument("--rows", type=int, default=12, help="queries shown (one per row)")
    p.add_argument("--cols", type=int, default=6, help="frames per row")


def _run_show(args: argparse.Namespace) -> int:
    from jaxseg.data.synth.show import render_example_page

    try:
        path = render_example_page(
            args.data, args.out, split=args.split, rows=args.rows, cols=args.cols
        )
    except FileNotFoundError as err:
        raise SystemExit(f"jaxseg data show: {err}") from None
    print(path)
    return 0


def _add_tokenizer(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="processor directory to write")
    p.add_argument("--vocab-size", type=int, default=2048, help="upper bound, <= 4096")


def _run_tokenizer(args: argparse.Namespace) -> int:
    from jaxseg.data.tokenizer import (
        build_processor,
        build_tokenizer,
        save_processor,
        special_token_ids,
    )

    try:
        tokenizer = build_tokenizer(args.vocab_size)
    except ValueError as err:
        raise SystemExit(f"jaxseg data tokenizer: {err}") from None
    path = save_processor(build_processor(tokenizer), args.out)
    info = {"path": str(path), "vocab_size": len(tokenizer), **special_token_ids(tokenizer)}
    print(json.dumps(info, indent=1))
    return 0


SUBCOMMANDS: dict[
    str,
    tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int], str],
] = {
    "synth": (_add_synth, _run_synth, "generate the synthetic reasoning-VOS benchmark"),
    "show": (_add_show, _run_show, "render example frames, masks and queries to a PNG"),
    "tokenizer": (
        _add_tokenizer,
        _run_tokenizer,
        "build the synthetic-world tokenizer + Qwen2.5-VL processor and save it",
    ),
    "cot": (_cot.add_arguments, _cot.run, "cold-start CoT traces (oracle or teacher) as JSONL"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    for name, (add, _, help_) in SUBCOMMANDS.items():
        add(sub.add_parser(name, help=help_, description=help_))


def run(args: argparse.Namespace) -> int:
    _, run_, _ = SUBCOMMANDS[args.data_command]
    return run_(args)


if __name__ == "__main__":  # pragma: no cover
    parser = argparse.ArgumentParser(prog="jaxseg data")
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
